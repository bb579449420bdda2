"""entragate: just-in-time IP allowlisting for Microsoft Entra ID named locations.

The public surface is small and pinned by ``tests/test_public_surface.py``; names load
on first use so that ``import entragate`` (and so every command) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from entragate.config import Config, ConfigError, load_config
    from entragate.errors import Code, EntraError

__all__ = ["Code", "Config", "ConfigError", "EntraError", "__version__", "load_config"]

_WHERE = {
    "Code": "entragate.errors",
    "EntraError": "entragate.errors",
    "Config": "entragate.config",
    "ConfigError": "entragate.config",
    "load_config": "entragate.config",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'entragate' has no attribute {name!r}")
