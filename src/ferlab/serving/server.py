"""How `ferlab api` starts: its key from the environment, and uvicorn with a deadline for request headers.

Light on purpose (no model, no FastAPI at import), so a bad ``FERLAB_API_KEY`` fails at once.

uvicorn bounds the size of a request's headers (h11's 16 kB) and the idle time between
requests (``timeout_keep_alive``), but not the time headers take to arrive: every byte
received resets the keep-alive timer, so a client sending one header byte every few
seconds holds its connection for ever (uvicorn issue #157; none of its settings covers
it). `_header_deadline` closes such a connection after ``Limits.header_timeout``. The
body has its own deadline in the app (``Limits.body_timeout``, answered 408), and the
number of requests with a body in flight is the app's too (``Limits.max_uploads``).
Not covered: a client that reads a response very slowly (uvicorn's flow control holds
one response buffer for it), and connections that send nothing (closed by keep-alive).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ferlab.errors import FerlabError

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

__all__ = ["API_KEY_ENV", "api_key_from_env", "check_api_key", "run", "server_config"]

log = logging.getLogger(__name__)

API_KEY_ENV = "FERLAB_API_KEY"


def check_api_key(key: str, source: str) -> None:
    """Refuse a key no client can send: empty, blank, padded or not printable ASCII (it travels in a header)."""
    if not key.strip():
        raise FerlabError(f"{source} is empty; give a key, or none for an API open to every client")
    if key != key.strip() or not (key.isascii() and key.isprintable()):
        raise FerlabError(f"{source} must be printable ASCII without leading or trailing spaces: "
                          "it is compared with an HTTP header, which cannot carry anything else")


def api_key_from_env(environ: Mapping[str, str]) -> str | None:
    """The API key in ``FERLAB_API_KEY``; None where the variable is unset (an API open to every client).

    Raises:
        FerlabError: the variable is set but empty or blank (an easy slip that would serve an open API
            without a word), or holds a key no client can send.
    """
    key = environ.get(API_KEY_ENV)
    if key is not None:
        check_api_key(key, API_KEY_ENV)
    return key


def _header_deadline(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose next request's headers take over `seconds`."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # a request's headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # waiting for the next one
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.debug("closed %s: no complete request headers within %g s", self.client, seconds)
                self.transport.close()

    return HeaderDeadline


def server_config(app: FastAPI, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn configuration for `app` from `ferlab.serving.api.create_app`, with its limits' header timeout."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level,
                          http=_header_deadline(app.state.limits.header_timeout))


def run(app: FastAPI, *, host: str, port: int) -> None:
    """Serve `app` until interrupted, as `ferlab api` does."""
    import uvicorn

    uvicorn.Server(server_config(app, host=host, port=port)).run()
