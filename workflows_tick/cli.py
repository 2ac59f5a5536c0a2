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
from workflows_tick.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_HOOK_TIMEOUT_SECONDS,
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_RUNNING,
    DEFAULT_RELOAD_SECONDS,
    DEFAULT_REMOVED_GRACE_SECONDS,
    SchedulerOptions,
)
from workflows_tick.ui import DEFAULT_HOST, DEFAULT_PORT
from workflows_tick.upcoming import DEFAULT_COUNT, MAX_COUNT

if TYPE_CHECKING:
    from workflows_tick.dags import DagRegistry


class Context:
    """What the group passes to its commands."""

    def __init__(self, config: str) -> None:
        self.config = config
        self._registry: DagRegistry | None = None

    @property
    def registry(self) -> DagRegistry:
        if self._registry is None:
            from workflows_tick.config import load_registry

            self._registry = load_registry(self.config)
        return self._registry


pass_ctx = click.make_pass_decorator(Context)


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """FloatRange lets 'nan' and 'inf' through; a duration must be a real number."""
    if value is None:
        return None
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
    ctx.obj = Context(config)


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

    for line in list_lines(obj.registry, paused=_paused_names()):
        click.echo(line)


def _paused_names() -> frozenset[str]:
    """The paused DAGs, when a database is set up; ``list`` works without one."""
    import os

    from workflows_tick.database import PGDATA_NAME, data_dir, resolve_url

    if resolve_url(os.environ) is None and not (data_dir(os.environ) / PGDATA_NAME).exists():
        return frozenset()
    from workflows_tick.scheduler import paused_dags

    try:
        return frozenset(p.dag_name for p in paused_dags())
    except Exception as exc:  # the list itself does not need the database
        click.echo(f"workflows: cannot read paused DAGs from the database: {exc}", err=True)
        return frozenset()


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
    default=DEFAULT_INTERVAL_SECONDS,
    show_default=True,
    envvar="WORKFLOWS_INTERVAL",
    help="Longest sleep between passes, in seconds.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    envvar="WORKFLOWS_CONCURRENCY",
    help="worker: tasks this process runs at once.",
)
@click.option(
    "--fork-server/--no-fork-server",
    default=True,
    show_default=True,
    envvar="WORKFLOWS_FORK_SERVER",
    help="worker: fork tasks from a warm server, or start a new interpreter for each.",
)
@click.option(
    "--max-running",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RUNNING,
    show_default=True,
    envvar="WORKFLOWS_MAX_RUNNING",
    help="kubernetes: pods in flight across all schedulers.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    callback=_finite,
    default=DEFAULT_LEASE_SECONDS,
    show_default=True,
    envvar="WORKFLOWS_LEASE_SECONDS",
    help="Seconds a running task run stays ours without renewal.",
)
@click.option(
    "--reload-interval",
    type=click.FloatRange(min=0.1),
    callback=_finite,
    default=DEFAULT_RELOAD_SECONDS,
    show_default=True,
    envvar="WORKFLOWS_RELOAD_INTERVAL",
    help="Seconds between checks of the DAG folder for edits.",
)
@click.option(
    "--removed-grace",
    type=click.FloatRange(min=1),
    callback=_finite,
    default=DEFAULT_REMOVED_GRACE_SECONDS,
    show_default=True,
    envvar="WORKFLOWS_REMOVED_GRACE",
    help="Seconds after its last pass that another scheduler (not stopped) counts as "
    "live: its copies of the DAGs keep their runs and schedules (rolling deploys).",
)
@click.option(
    "--hook-timeout",
    type=click.FloatRange(min=0.01),
    callback=_finite,
    default=DEFAULT_HOOK_TIMEOUT_SECONDS,
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
    fork_server: bool,
    max_running: int,
    lease: float,
    reload_interval: float,
    removed_grace: float,
    hook_timeout: float,
    metrics_port: int | None,
) -> None:
    """Run the scheduler with the task manager MANAGER.

    MANAGER is worker, kubernetes, or package.module:ClassName for a TaskManager
    subclass of your own (importable, or next to the config file).

    Migrates the database first. Loops until SIGINT (finish running tasks, then
    exit) or SIGTERM (stop them, record them failed, exit).
    """
    from workflows_tick.loop import run_scheduler

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
        fork_server=fork_server,
        max_running=max_running,
        lease_seconds=lease,
        reload_seconds=reload_interval,
        removed_grace=removed_grace,
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
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the run to end, printing each task run's state change; exit 0 if it "
    "succeeded, 1 if it failed or was cancelled. A scheduler must be running.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    callback=_finite,
    default=None,
    metavar="SECONDS",
    help="With --wait: give up after this long (exit 124; the run goes on).",
)
@pass_ctx
def trigger(
    obj: Context,
    dag: str,
    parameters: tuple[str, ...],
    creator: str,
    wait: bool,
    timeout: float | None,
) -> None:
    """Create a run of DAG now and print its id."""
    from workflows_tick.scheduler import trigger_dag

    if timeout is not None and not wait:
        raise UsageError("--timeout needs --wait")
    params = _parse_parameters(parameters)
    loaded = obj.registry.get(_known_dag(obj.registry, dag))
    run = trigger_dag(loaded, creator=creator, parameters=params)
    click.echo(run.id)
    if wait:
        _wait(run.id, timeout)


def _wait(run_id: int, timeout: float | None) -> None:
    from workflows_tick.logs import redact
    from workflows_tick.queries import TaskRunRow
    from workflows_tick.reports import task_status
    from workflows_tick.scheduler import wait_for_run

    def show(task_run: TaskRunRow) -> None:
        moment = task_run.ended_at or task_run.started_at or task_run.created_at
        detail = f": {redact(task_run.error)}" if task_run.error else ""
        click.echo(
            f"{moment.strftime('%H:%M:%S')}  {task_run.task_name} attempt {task_run.attempt} "
            f"{task_status(task_run)}{detail}"
        )

    run = wait_for_run(run_id, timeout=timeout, on_change=show)
    message = f": {redact(run.message)}" if run.message else ""
    click.echo(f"run {run.id} {run.status.value}{message}")
    if run.status.value != "succeeded":
        sys.exit(1)


@cli.command()
@click.argument("run_id", type=int, metavar="RUN_ID")
@click.option("--reason", metavar="TEXT", help="Why: stored in the run's message.")
@click.option("--by", default="cli", show_default=True, help="Who cancels (stored).")
@pass_ctx
def cancel(obj: Context, run_id: int, reason: str | None, by: str) -> None:
    """Cancel a running run: its waiting task runs are cancelled, and its running
    attempts are stopped by the next pass of the scheduler running them."""
    from workflows_tick.scheduler import cancel_run

    done = cancel_run(run_id, reason=reason, by=by)
    stopping = f", {done.running} running attempt(s) to be stopped" if done.running else ""
    click.echo(f"run {run_id} cancelled ({done.waiting} waiting task run(s) cancelled{stopping})")


@cli.command()
@click.argument("run_id", type=int, metavar="RUN_ID")
@click.option("--all", "every_task", is_flag=True, help="Rerun every task, succeeded ones too.")
@click.option("--by", default="cli", show_default=True, help="Who reruns (stored).")
@pass_ctx
def rerun(obj: Context, run_id: int, every_task: bool, by: str) -> None:
    """Rerun an ended run from failure, in place: its failed and cancelled tasks and
    everything downstream of them get new attempts; succeeded tasks are kept.

    Earlier attempts stay in the history with their logs. A scheduler runs it.
    """
    from workflows_tick.scheduler import rerun_run

    done = rerun_run(run_id, every_task=every_task, by=by, registry=obj.registry)
    what = ", ".join(done.tasks) if done.tasks else "no task yet run"
    click.echo(f"run {run_id} ({done.run.dag_name}) is running again: new attempts of {what}")


@cli.command()
@click.argument("dag")
@click.option("--start", required=True, metavar="ISO_TIME", help="First time of the range.")
@click.option("--end", required=True, metavar="ISO_TIME", help="Last time of the range.")
@click.option("--dry-run", is_flag=True, help="Print the fire times; create nothing.")
@click.option("--rerun-failed", is_flag=True, help="Rerun failed runs of the range in place.")
@click.option("--yes", is_flag=True, help="Allow more than 1,000 fire times.")
@click.option("--by", default="cli", show_default=True, help="Who backfills (the runs' creator).")
@pass_ctx
def backfill(
    obj: Context,
    dag: str,
    start: str,
    end: str,
    dry_run: bool,
    rerun_failed: bool,
    yes: bool,
    by: str,
) -> None:
    """Create one run of DAG per fire time of its schedule between --start and --end
    (inclusive; times without an offset are in the DAG's time zone).

    Times that already have a run are skipped (--rerun-failed reruns the failed
    ones). Runs execute in time order, behind runs already queued; a scheduler
    runs them.
    """
    from workflows_tick import scheduler

    loaded = obj.registry.get(_known_dag(obj.registry, dag))
    first = scheduler.parse_time(start, loaded.timezone, "--start")
    last = scheduler.parse_time(end, loaded.timezone, "--end")
    done = scheduler.backfill(
        loaded,
        first,
        last,
        dry_run=dry_run,
        rerun_failed=rerun_failed,
        confirm_many=yes,
        by=by,
    )
    later = f"; {done.later} later time(s) left to the schedule" if done.later else ""
    if dry_run:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(loaded.timezone)
        existing = {r.scheduled_for: r for r in [*done.skipped, *done.rerun]}
        for time in done.times:
            run = existing.get(time)
            if run is None:
                note = "new run"
            elif run in done.rerun:
                note = f"run {run.id} failed: rerun"
            else:
                note = f"run {run.id} {run.status.value}: skipped"
            click.echo(f"{time.astimezone(zone).isoformat()}  {note}")
        click.echo(
            f"dry run: {len(done.times) - len(existing)} to create, {len(done.skipped)} to skip"
            + (f", {len(done.rerun)} to rerun" if rerun_failed else "")
            + later
        )
        return
    click.echo(
        f"{dag}: {len(done.created)} run(s) created, {len(done.skipped)} skipped"
        + (f", {len(done.rerun)} failed run(s) rerun" if rerun_failed else "")
        + later
    )


@cli.command("next")
@click.argument("dag")
@click.option(
    "-n",
    "count",
    default=str(DEFAULT_COUNT),
    show_default=True,
    metavar="N",
    help=f"How many fire times (at most {MAX_COUNT}).",
)
@click.option(
    "--after",
    metavar="ISO_TIME",
    default=None,
    help="List fire times after this time (default: now); without an offset it is in "
    "the DAG's time zone.",
)
@pass_ctx
def next_command(obj: Context, dag: str, count: str, after: str | None) -> None:
    """Print DAG's next fire times, one a line: in its time zone, then in UTC.

    Follows the DAG's schedule, time zone and DST policy (dst_gap, dst_repeat). Needs
    no database.
    """
    from datetime import UTC, datetime

    from workflows_tick.errors import DagLoadError
    from workflows_tick.upcoming import fire_line, next_fires, parse_after, parse_count

    how_many = parse_count(count)
    loaded = obj.registry.load(_known_dag(obj.registry, dag))
    if isinstance(loaded, DagLoadError):
        raise UsageError(f"DAG {dag} does not load: {loaded}")
    start = datetime.now(UTC) if after is None else parse_after(after, loaded.timezone)
    for fire in next_fires(loaded, start, how_many):
        click.echo(fire_line(fire, loaded.timezone))


@cli.command()
@click.argument("dag")
@click.option("--by", default="cli", show_default=True, help="Who pauses (stored).")
@pass_ctx
def pause(obj: Context, dag: str, by: str) -> None:
    """Stop creating scheduled runs of DAG, for every scheduler.

    Runs already created go on; manual triggers and backfills are still accepted
    and run.
    """
    from workflows_tick.scheduler import pause_dag

    name = _known_dag(obj.registry, dag)
    changed = pause_dag(name, by=by)
    click.echo(f"DAG {name} {'paused' if changed else 'was already paused'}")


@cli.command()
@click.argument("dag")
@click.option("--by", default="cli", show_default=True, help="Who unpauses (stored).")
@pass_ctx
def unpause(obj: Context, dag: str, by: str) -> None:
    """Schedule DAG again from its next fire time (missed times are not replayed)."""
    from workflows_tick.scheduler import unpause_dag

    name = _known_dag(obj.registry, dag)
    changed = unpause_dag(name, by=by)
    click.echo(f"DAG {name} {'unpaused' if changed else 'was not paused'}")


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
@click.option(
    "--older-than", required=True, metavar="DURATION", help="e.g. 90d, 12h, 30m, 45s, 2w."
)
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@pass_ctx
def prune(obj: Context, older_than: str, dry_run: bool) -> None:
    """Delete finished runs that ended more than DURATION ago, with their task runs
    and logs, in small batches. Never a running run, nor a DAG's most recent run."""
    from workflows_tick import scheduler

    done = scheduler.prune(scheduler.parse_duration(older_than), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for dag, (runs, task_runs) in done.by_dag.items():
        click.echo(f"{dag}: {verb} {runs} run(s), {task_runs} task run(s)")
    click.echo(
        f"{verb} {done.runs} run(s) and {done.task_runs} task run(s) that ended before "
        f"{done.cutoff.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        + (f"; {done.heartbeats} old scheduler heartbeat(s)" if done.heartbeats else "")
    )


@cli.command()
@pass_ctx
def status(obj: Context) -> None:
    """Schedulers seen in the last 5 minutes, paused DAGs, running and waiting work,
    and the next fire times."""
    from workflows_tick.reports import status_lines
    from workflows_tick.scheduler import status as read_status

    for line in status_lines(read_status()):
        click.echo(line)


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
