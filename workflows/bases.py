"""dag-workflows' ``workflows.bases``: the registry, DAG and task classes, and events."""

from workflows_tick.dags import DagRegistry
from workflows_tick.errors import DagLoadError as RegistrationError
from workflows_tick.hooks import Event
from workflows_tick.model import Dag as DAG
from workflows_tick.model import Task

__all__ = ["DAG", "DagRegistry", "Event", "RegistrationError", "Task"]
