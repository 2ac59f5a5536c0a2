"""Which :class:`TaskManager` a name on the command line means.

``worker`` and ``kubernetes`` are the managers that ship; ``package.module:ClassName``
is a user's subclass of :class:`~workflows_tick.managers.base.TaskManager`,
imported from the current directory, the config file's directory or the
installed packages.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

from workflows_tick.errors import TaskManagerError
from workflows_tick.logs import redact
from workflows_tick.managers.base import TaskManager

BUILTIN_MANAGERS = {
    "worker": "workflows_tick.managers.worker:WorkerTaskManager",
    "kubernetes": "workflows_tick.managers.kubernetes:KubernetesTaskManager",
}
"""The managers that ship, by the name the command line gives them."""


def find_manager(spec: str, config: str | None = None) -> type[TaskManager]:
    """The class ``spec`` names: ``worker``, ``kubernetes`` or ``package.module:ClassName``.

    ``config`` is the scheduler's config argument: when it is a file, its directory
    is searched too, so a manager may live next to the config. Raises
    :class:`TaskManagerError` (one line, exit code 2) for a name that does not
    lead to a concrete subclass of :class:`TaskManager`.
    """
    target = BUILTIN_MANAGERS.get(spec, spec)
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise TaskManagerError(
            spec,
            f"unknown task manager; use {', '.join(BUILTIN_MANAGERS)}, or "
            "package.module:ClassName for a TaskManager subclass of your own",
        )
    cls = getattr(_import(spec, module_name, config), class_name, None)
    if cls is None:
        raise TaskManagerError(spec, f"module {module_name!r} has no attribute {class_name!r}")
    _check(spec, cls)
    return cls  # type: ignore[no-any-return]


def _import(spec: str, module_name: str, config: str | None) -> object:
    sys.path[0:0] = [folder for folder in _search_path(config) if folder not in sys.path]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
            where = " or ".join(_search_path(config))
            raise TaskManagerError(
                spec,
                f"no module named {module_name!r} (not installed, and not in {where})",
            ) from None
        raise TaskManagerError(spec, f"importing {module_name} failed: {_one_line(exc)}") from None
    except SyntaxError as exc:
        raise TaskManagerError(
            spec, f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}"
        ) from None
    except Exception as exc:
        raise TaskManagerError(spec, f"importing {module_name} failed: {_one_line(exc)}") from None


def _search_path(config: str | None) -> list[str]:
    """The current directory, then the config file's directory (if it is a file)."""
    folders = [str(Path.cwd())]
    if config and (config.endswith(".py") or "/" in config):
        folder = str(Path(config).resolve().parent)
        if folder not in folders:
            folders.append(folder)
    return folders


def _check(spec: str, cls: object) -> None:
    base = f"{TaskManager.__module__}.{TaskManager.__name__}"
    if not (isinstance(cls, type) and issubclass(cls, TaskManager)):
        raise TaskManagerError(spec, f"is not a subclass of {base}")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise TaskManagerError(spec, f"does not implement {missing} (abstract in {base})")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TaskManagerError(
            spec,
            "has no name: set the class attribute name = '...' "
            "(stored on each task run, so that a scheduler polls only its own)",
        )


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {redact(' '.join(str(exc).split()))}"
