"""A project of broken DAGs (and a few good ones) for the loader's tests."""

import os

from workflows_tick import dags

DAGS = dags.register_directory(os.path.dirname(__file__))  # noqa: PTH120
