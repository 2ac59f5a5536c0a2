"""The example project: every sub-folder holding a workflow.yaml is a DAG."""

import os

from workflows_tick import dags

DAGS = dags.register_directory(os.path.dirname(__file__))  # noqa: PTH120
