"""workflows-tick: a stateless, PostgreSQL-backed cron scheduler for DAGs of tasks.

Kept import-light on purpose: ``workflows <config> run`` is started once per task.
"""

__version__ = "0.1.0"
