"""dag-workflows' import name, for projects moving to workflows-tick unchanged.

``from workflows import dags, hooks, scheduler`` in a dag-workflows config module
gets workflows-tick's registry, hooks and trigger API. Both packages install a
``workflows`` command and a ``workflows`` import package: install one or the other.
See ``docs/migrating-from-dag-workflows.md``. Kept import-light, like
:mod:`workflows_tick`: ``workflows <config> run`` imports it once per task.
"""

from workflows_tick import __version__

__all__ = ["__version__"]
