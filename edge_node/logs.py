"""Structured logs: one JSON object per line on stderr, as the control plane's
Powertools logger writes them (``timestamp``, ``level``, ``logger``, ``message``,
``pid``, and ``exception`` when there is one)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body)


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))


def announce(line: str) -> None:
    """Write one plain line (``edge ready ...``) that supervisors parse from stderr.

    One ``write`` call: ``print`` writes the text and its newline separately, and a
    worker's log line written between them would glue onto the marker line.
    """
    sys.stderr.flush()
    os.write(sys.stderr.fileno(), (line + "\n").encode())
