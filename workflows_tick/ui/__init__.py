"""``workflows CONFIG ui``: the web page for the on-call engineer.

Read-only pages (DAGs, a DAG's grid and graph, a run, a task run's log, failures,
schedulers) rendered on the server, the same data as JSON under ``/api/``, and,
with ``--allow-actions``, buttons that trigger, cancel, rerun and pause.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
