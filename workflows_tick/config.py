"""Loading the user's config module, which exposes ``DAGS``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from workflows_tick.dags import DagRegistry
from workflows_tick.errors import ConfigError, WorkflowsError
from workflows_tick.logs import redact


def load_registry(config: str) -> DagRegistry:
    """Import ``config`` (a ``.py`` path or a module path) and return its ``DAGS``."""
    module = _import(config)
    registry = getattr(module, "DAGS", None)
    if registry is None:
        raise ConfigError(
            f"{config}: defines no DAGS (expected DAGS = dags.register_directory(...))"
        )
    if not isinstance(registry, DagRegistry):
        raise ConfigError(f"{config}: DAGS is a {type(registry).__name__}, not a DagRegistry")
    return registry


def _import(config: str) -> object:
    try:
        if config.endswith(".py") or "/" in config:
            path = Path(config)
            if not path.is_file():
                raise ConfigError(f"{config}: no such config file")
            name = f"workflows_config_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"{config}: cannot be imported as a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            return importlib.import_module(config)
        except ModuleNotFoundError as exc:
            if exc.name and config.startswith(exc.name):
                raise ConfigError(
                    f"{config}: no such config module (not a .py file, and not importable "
                    "from the current directory)"
                ) from None
            raise
    except WorkflowsError:
        raise
    except SyntaxError as exc:
        raise ConfigError(
            f"{exc.filename}:{exc.lineno}: syntax error in config: {exc.msg}"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"{config}: importing the config failed: {type(exc).__name__}: "
            f"{redact(' '.join(str(exc).split()))}"
        ) from None
