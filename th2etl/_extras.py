"""Import an optional dependency, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from th2etl.exceptions import MissingExtraError


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the '{module}' package, which is not installed; "
            f"install it with: pip install 'th2etl[{extra}]'"
        ) from exc
