"""dag-workflows' ``workflows.dags``: ``DAGS = dags.register_directory(folder)``."""

from workflows_tick.dags import DagRegistry, register_directory
from workflows_tick.model import Dag as DAG
from workflows_tick.model import Task

__all__ = ["DAG", "DagRegistry", "Task", "register_directory"]
