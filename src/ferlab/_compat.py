"""Mapping access on typed results, for callers of the versions that returned plain dicts (kept one release)."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["DictAccess"]


class DictAccess:
    """``result["key"]`` reads ``result.to_dict()["key"]``, with a DeprecationWarning that names the attribute way."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        warnings.warn(f"{type(self).__name__}[{key!r}] is deprecated: use its attributes or .to_dict()[{key!r}]",
                      DeprecationWarning, stacklevel=2)
        return self.to_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()
