"""Logging set-up: plain or JSON lines, with secrets scrubbed from every record."""

from __future__ import annotations

import logging
import re
import sys
import time

_SECRETS: set[str] = set()
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s/]+)@", re.I)


def register_secret(value: str | None) -> None:
    """Never print ``value`` again, in any log line (short values are ignored)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with URL passwords and registered secrets replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\g<scheme>:***@", text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class _RedactingFormatter(logging.Formatter):
    """Redacts the message, exception and stack text; the prefix (time, level, logger) is
    left alone, so a short registered value such as ``INFO`` never masks the level."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy: the record is shared with the other handlers.
        copy = logging.makeLogRecord(record.__dict__)
        copy.msg = redact(record.getMessage())
        copy.args = None
        if record.exc_info:
            copy.exc_text = redact(record.exc_text or self.formatException(record.exc_info))
            copy.exc_info = None
        elif record.exc_text:
            copy.exc_text = redact(record.exc_text)
        if record.stack_info:
            copy.stack_info = redact(record.stack_info)
        return super().format(copy)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json  # only for --log-json: `workflows run` starts without it

        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "severity": record.levelname,  # dag-workflows' field, as log collectors read it
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        # Only the message and the exception are redacted: time, level and logger are not.
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload)


def setup_logging(json_lines: bool = False, verbose: int = 0) -> None:
    level = logging.WARNING if verbose < 0 else (logging.INFO, logging.DEBUG)[min(verbose, 1)]
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "kubernetes", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
