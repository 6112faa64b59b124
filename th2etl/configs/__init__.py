"""Configuration read from the environment: :func:`get_settings`."""

from __future__ import annotations

from th2etl.configs.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
