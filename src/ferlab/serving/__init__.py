"""Serving: the Gradio web app (`ferlab serve`) and the REST API (`ferlab api`), on the optional ``serve`` extra."""

from __future__ import annotations

import importlib.util

from ferlab.errors import FerlabError

__all__ = ["require_serving"]


def require_serving(*modules: str) -> None:
    """Fail with the install command, not an ImportError, where the ``serve`` extra is missing.

    Raises:
        FerlabError: one of `modules` is not installed.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise FerlabError(f"serving needs {', '.join(missing)}, from the serve extra: pip install 'ferlab[serve]'")
