"""dag-workflows' ``workflows.dags``: ``DAGS = dags.register_directory(folder)``."""

from workflows_tick.dags import Dag as DAG
from workflows_tick.dags import DagRegistry, Task, register_directory

__all__ = ["DAG", "DagRegistry", "Task", "register_directory"]
