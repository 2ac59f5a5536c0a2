"""The ``workflows`` command.

Every heavy import (SQLAlchemy, Alembic, the Kubernetes client) happens inside the
command that needs it: ``workflows <config> run`` is started once per task.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from workflows_tick import __version__
from workflows_tick.errors import UsageError, WorkflowsError
from workflows_tick.ui import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from workflows_tick.dags import DagRegistry


class Context:
    """What the group passes to its commands."""

    def __init__(self, config: str, log_json: bool, verbose: int) -> None:
        self.config = config
        self.log_json = log_json
        self.verbose = verbose
        self._registry: DagRegistry | None = None

    @property
    def registry(self) -> DagRegistry:
        if self._registry is None:
            from workflows_tick.config import load_registry

            self._registry = load_registry(self.config)
        return self._registry


pass_ctx = click.make_pass_decorator(Context)


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """FloatRange lets 'nan' and 'inf' through; a duration must be a real number."""
    if value != value or value in (float("inf"), float("-inf")):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="workflows")
@click.option(
    "--log-json/--log-text",
    default=False,
    envvar=["WORKFLOWS_LOG_JSON", "LOG_JSON"],
    help="Log one JSON object per line, or plain text (the default).",
)
@click.option("-v", "--verbose", count=True, help="Debug logging.")
@click.option("--quiet", is_flag=True, help="Log only warnings and errors.")
@click.argument("config")
@click.pass_context
def cli(ctx: click.Context, config: str, log_json: bool, verbose: int, quiet: bool) -> None:
    """Run DAGs of tasks on cron schedules, backed by PostgreSQL.

    CONFIG is a path to a .py file, or an importable module path, exposing DAGS.
    """
    from workflows_tick.logs import setup_logging

    if quiet:
        verbose = -1

    setup_logging(json_lines=log_json, verbose=verbose)
    ctx.obj = Context(config, log_json, verbose)


@cli.command()
@click.argument("dag")
@click.option("-o", "--only", metavar="TASK", help="Run only this task.")
@click.option(
    "-b", "--begin", metavar="TASK", help="Run this task and everything downstream of it."
)
@click.option("-e", "--end", metavar="TASK", help="Run this task and everything upstream of it.")
@pass_ctx
def run(obj: Context, dag: str, only: str | None, begin: str | None, end: str | None) -> None:
    """Run DAG's tasks in this process, in topological order.

    Stops with a non-zero exit at the first failure. -b and -e together run the
    tasks between them.
    """
    import os

    from workflows_tick.lifeline import die_with_scheduler
    from workflows_tick.runner import run_tasks

    die_with_scheduler(os.environ)
    if only is not None and (begin is not None or end is not None):
        raise UsageError("-o cannot be combined with -b or -e")
    loaded = obj.registry.get(_known_dag(obj.registry, dag))
    run_tasks(
        loaded, loaded.select(only=only, begin=begin, end=end), os.environ, obj.registry.hooks
    )


@cli.command()
@click.option(
    "--manager",
    metavar="MANAGER",
    default=None,
    help="Also check what this task manager needs (e.g. kube_image): worker, kubernetes "
    "or package.module:ClassName.",
)
@pass_ctx
def validate(obj: Context, manager: str | None) -> None:
    """Load every DAG and report every problem, one line each (exit 1 if any)."""
    from workflows_tick.validate import validate_registry

    report = validate_registry(obj.registry, manager=manager, config=obj.config)
    for line in report.problems:
        click.echo(line, err=True)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    for line in report.summary:
        click.echo(line)
    if report.problems:
        sys.exit(1)


@cli.command("list")
@pass_ctx
def list_dags(obj: Context) -> None:
    """List the DAGs, their schedules and tasks."""
    from workflows_tick.validate import list_lines

    for line in list_lines(obj.registry):
        click.echo(line)


@cli.command()
@click.argument("manager")
@click.option(
    "--once", is_flag=True, help="One pass, then exit (the worker waits for what it started)."
)
@click.option("--until-idle", is_flag=True, help="Pass after pass until no run is running.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    callback=_finite,
    default=5.0,
    show_default=True,
    envvar="WORKFLOWS_INTERVAL",
    help="Longest sleep between passes, in seconds.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    envvar="WORKFLOWS_CONCURRENCY",
    help="worker: tasks this process runs at once.",
)
@click.option(
    "--max-running",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    envvar="WORKFLOWS_MAX_RUNNING",
    help="kubernetes: pods in flight across all schedulers.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    callback=_finite,
    default=60.0,
    show_default=True,
    envvar="WORKFLOWS_LEASE_SECONDS",
    help="Seconds a running task run stays ours without renewal.",
)
@click.option(
    "--reload-interval",
    type=click.FloatRange(min=0.1),
    callback=_finite,
    default=10.0,
    show_default=True,
    envvar="WORKFLOWS_RELOAD_INTERVAL",
    help="Seconds between checks of the DAG folder for edits.",
)
@click.option(
    "--hook-timeout",
    type=click.FloatRange(min=0.01),
    callback=_finite,
    default=10.0,
    show_default=True,
    envvar="WORKFLOWS_HOOK_TIMEOUT",
    help="Seconds an event hook may run before it counts as failed (and is retried).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    envvar="WORKFLOWS_METRICS_PORT",
    help="Serve /metrics (Prometheus) and /healthz on this port (0: any free port).",
)
@pass_ctx
def schedule(
    obj: Context,
    manager: str,
    once: bool,
    until_idle: bool,
    interval: float,
    concurrency: int,
    max_running: int,
    lease: float,
    reload_interval: float,
    hook_timeout: float,
    metrics_port: int | None,
) -> None:
    """Run the scheduler with the task manager MANAGER.

    MANAGER is worker, kubernetes, or package.module:ClassName for a TaskManager
    subclass of your own (importable, or next to the config file).

    Migrates the database first. Loops until SIGINT (finish running tasks, then
    exit) or SIGTERM (stop them, record them failed, exit).
    """
    from workflows_tick.schedule import SchedulerOptions, run_scheduler

    if once and until_idle:
        raise UsageError("--once and --until-idle cannot be combined")
    if once and metrics_port is not None:
        raise UsageError(
            "--metrics-port needs a running loop; with --once, use `workflows CONFIG metrics`"
        )
    options = SchedulerOptions(
        config=obj.config,
        manager=manager,
        once=once,
        until_idle=until_idle,
        interval=interval,
        concurrency=concurrency,
        max_running=max_running,
        lease_seconds=lease,
        reload_seconds=reload_interval,
        hook_timeout=hook_timeout,
        metrics_port=metrics_port,
    )
    run_scheduler(obj.registry, options)


def _parse_parameters(values: tuple[str, ...]) -> dict[str, str]:
    parameters = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise UsageError(f"-p {value!r}: expected VAR=value")
        parameters[name] = rest
    return parameters


@cli.command()
@click.argument("dag")
@click.option(
    "-p",
    "--parameter",
    "parameters",
    multiple=True,
    metavar="VAR=VALUE",
    help="A parameter for the run's tasks (repeatable).",
)
@click.option("--creator", default="cli", show_default=True, help="Who asked for the run.")
@pass_ctx
def trigger(obj: Context, dag: str, parameters: tuple[str, ...], creator: str) -> None:
    """Create a run of DAG now and print its id."""
    from workflows_tick.scheduler import trigger_dag

    params = _parse_parameters(parameters)
    loaded = obj.registry.get(_known_dag(obj.registry, dag))
    run = trigger_dag(loaded, creator=creator, parameters=params)
    click.echo(run.id)


@cli.command()
@click.argument("dag", required=False)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many runs.",
)
@pass_ctx
def runs(obj: Context, dag: str | None, limit: int) -> None:
    """Show recent runs (of DAG, or of all DAGs) and their task runs."""
    from workflows_tick.reports import runs_table

    if dag is not None:
        _known_dag(obj.registry, dag)
    for line in runs_table(dag, limit):
        click.echo(line)


@cli.command()
@click.argument("task_run", type=int)
@pass_ctx
def logs(obj: Context, task_run: int) -> None:
    """Show the stored output of a task run."""
    from workflows_tick.reports import task_run_log

    click.echo(task_run_log(task_run), nl=False)


@cli.command()
@pass_ctx
def migrate(obj: Context) -> None:
    """Bring the database schema up to date."""
    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    with connect(purpose="migrate") as db:
        upgrade(db.engine)
    click.echo("database is up to date")


@cli.command()
def metrics() -> None:
    """Print the Prometheus metrics once (gauges read from the database)."""
    from workflows_tick import metrics as prometheus
    from workflows_tick.database import connect
    from workflows_tick.migrate import upgrade

    with connect(purpose="metrics") as db:
        upgrade(db.engine)
        click.echo(prometheus.render(db.engine).decode(), nl=False)


@cli.group()
def cronitor() -> None:
    """Cronitor monitors of the scheduled DAGs (needs CRONITOR_API_KEY)."""


@cronitor.command("sync")
@click.option("--dry-run", is_flag=True, help="Print what would be sent; send nothing.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    callback=_finite,
    default=5.0,
    show_default=True,
    envvar="WORKFLOWS_INTERVAL",
    help="The schedulers' --interval (the monitors' grace covers it).",
)
@pass_ctx
def cronitor_sync(obj: Context, dry_run: bool, interval: float) -> None:
    """Create, update or delete one job monitor per scheduled DAG, as needed."""
    import os

    from workflows_tick.cronitor_monitoring import API_KEY_VARIABLE, CronitorSettings, sync_monitors
    from workflows_tick.database import connect
    from workflows_tick.errors import DagLoadError
    from workflows_tick.migrate import upgrade

    # A dry run needs no key: it shows what a sync with the current settings would send.
    settings = CronitorSettings.from_environment(
        {API_KEY_VARIABLE: "dry-run", **os.environ} if dry_run else os.environ
    )
    if settings is None:
        raise UsageError(f"{API_KEY_VARIABLE} is not set")
    loaded = obj.registry.load_all()
    dags = [d for d in loaded.values() if not isinstance(d, DagLoadError)]
    broken = [name for name, d in loaded.items() if isinstance(d, DagLoadError)]
    for name in broken:
        click.echo(f"{name}: not loaded, its monitor is left as it is", err=True)
    with connect(purpose="cronitor") as db:
        upgrade(db.engine)
        plan = sync_monitors(db.engine, dags, settings, interval, keep=broken, dry_run=dry_run)
    if plan is None:
        raise WorkflowsError("another scheduler is syncing the monitors right now; try again")
    verb = "would " if dry_run else ""
    for spec in plan.put:
        click.echo(
            f"{verb}put {spec['key']}: {spec['schedule']} {spec['timezone']}, "
            f"grace {spec['grace_seconds']}s"
        )
    for key in plan.delete:
        click.echo(f"{verb}delete {key}")
    click.echo(f"{plan.unchanged} unchanged")


@cli.command()
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    envvar="WORKFLOWS_UI_HOST",
    help="Address to listen on; any but loopback needs WORKFLOWS_UI_TOKEN or --insecure.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar="WORKFLOWS_UI_PORT",
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Show the trigger, cancel, rerun and pause buttons (else every POST is refused).",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve a non-loopback address without a token (anyone who reaches it can read).",
)
@pass_ctx
def ui(obj: Context, host: str, port: int, allow_actions: bool, insecure: bool) -> None:
    """Serve the web page: DAGs, run grid and graph, logs, failures; JSON under /api/.

    Read-only unless --allow-actions. Set WORKFLOWS_UI_TOKEN to require a token
    (a bearer header, or the login form's cookie) on every request.
    """
    import os

    from workflows_tick.ui.security import TOKEN_VARIABLE, check_exposure
    from workflows_tick.ui.serve import serve

    # Before loading the DAGs or the database: a refusal is instant.
    check_exposure(host, os.environ.get(TOKEN_VARIABLE, "").strip() or None, insecure)
    serve(obj.registry, host=host, port=port, allow_actions=allow_actions, insecure=insecure)


def _known_dag(registry: DagRegistry, name: str) -> str:
    from workflows_tick.errors import UnknownDagError

    if name not in registry:
        raise UnknownDagError(name, registry.names())
    return name


def _fail(exc: WorkflowsError) -> NoReturn:
    from workflows_tick.logs import redact

    click.echo(f"workflows: {redact(' '.join(str(exc).split()))}", err=True)
    sys.exit(exc.exit_code)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: one line and an exit code for every error we expect."""
    try:
        return cli.main(args=argv, prog_name="workflows", standalone_mode=True)
    except WorkflowsError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("workflows: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if not type(exc).__module__.startswith("sqlalchemy"):
            raise
        # A database error: its driver's first line, never the statement's parameters.
        from workflows_tick.logs import redact

        reason = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()
        click.echo(f"workflows: database error: {redact(reason[0] if reason else '')}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
