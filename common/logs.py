"""Structured log lines on stderr: Cloud Logging reads `severity` and `message` from JSON."""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any


def log(severity: str, message: str, *, exc: BaseException | None = None, **fields: Any) -> None:
    entry = {"severity": severity, "message": message, **fields}
    if exc is not None:
        entry["stack_trace"] = "".join(traceback.format_exception(exc))
    sys.stderr.write(json.dumps(entry, default=str) + "\n")
