"""The request line as `make dev` prints it (common/logs.py); the lines themselves, written by
requests: tests/integration/test_logs.py."""

from __future__ import annotations


def test_make_dev_prints_the_same_line_readably():
    from common import logs

    entry = {
        "severity": "ERROR",
        "message": "GET /roles 500 3 ms",
        "request_id": "abc",
        "caller": "a@example.com",
        "route": "/roles",
        "httpRequest": {"status": 500},
        "stack_trace": "Traceback (most recent call last):\nRuntimeError: x\n",
    }
    text = logs._text(entry)
    first, *rest = text.splitlines()
    assert "ERROR" in first and "GET /roles 500 3 ms" in first and "caller=a@example.com" in first
    assert "request_id=abc" in first and "httpRequest" not in first
    assert rest == ["    Traceback (most recent call last):", "    RuntimeError: x"]
