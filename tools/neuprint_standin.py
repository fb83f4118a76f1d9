"""A local stand-in for a neuPrint server (neuPrintHTTP's `POST /api/custom/custom`), for the
neuprint function: `make dev` points its demo dataset's `neuprintHTTP.server` at it and the
tests script it. Like neuPrint it checks the bearer token (401 otherwise), answers a Cypher
query with `{"columns", "data"}` and a query it cannot run with 400 `{"error"}`. It knows the
clio website's queries (NeuPrintManager's `getTypes` and `getConnections`, made-up but
repeatable data for the body ids they name); any other Cypher is "not valid". Every request is
recorded as it arrived (path, token, body bytes).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools.emulators import free_port

CUSTOM_QUERY = "/api/custom/custom"
_IDS = r"\[([0-9,\s]*)\]"
TYPES = re.compile(
    rf"MATCH \(n: ?Neuron\) WHERE n\.bodyId in {_IDS} RETURN n\.bodyId AS id, n\.type AS type\s*"
)
CONNECTIONS = re.compile(
    rf"MATCH \(m :Neuron\)(-|<-)\[e:ConnectsTo\](->|-)\(n :Neuron\) WHERE m\.bodyId in {_IDS} "
    r"RETURN n\.bodyId AS id, n\.type AS type, sum\(e\.weight\) AS weight ORDER BY weight DESC, id\s*"
)


@dataclass(frozen=True)
class Received:
    """One request as it reached the stand-in."""

    method: str
    path: str
    authorization: str | None
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def neuron_type(body_id: int) -> str:
    return f"T{body_id % 7}"


def run(cypher: str) -> dict[str, Any] | None:
    """The answer to a query the stand-in knows; None for any other."""
    if match := TYPES.fullmatch(cypher):
        ids = [int(i) for i in match[1].split(",") if i.strip()]
        return {"columns": ["id", "type"], "data": [[i, neuron_type(i)] for i in ids]}
    if match := CONNECTIONS.fullmatch(cypher):
        ids = [int(i) for i in match[3].split(",") if i.strip()]
        step = 1 if match[1] == "-" else 2  # downstream partners or upstream ones
        rows = [(i * 10 + step * k, 10 * (4 - k)) for i in ids for k in (1, 2, 3)]
        rows.sort(key=lambda row: (-row[1], row[0]))
        return {"columns": ["id", "type", "weight"], "data": [[p, neuron_type(p), w] for p, w in rows]}
    return None


class NeuprintService:
    """`token` is the one bearer token it accepts. `script(received)` may answer a request
    instead: (status, content type, body), e.g. a proxy's HTML page; `delay` seconds pass
    before each answer (a neuPrint that is slow to answer)."""

    def __init__(self, token: str = "neuprint-standin-token"):
        self.token = token
        self.received: list[Received] = []
        self.script: Callable[[Received], tuple[int, str, bytes] | None] = lambda received: None
        self.delay = 0.0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
        self.script = lambda received: None
        self.delay = 0.0

    def start(self) -> NeuprintService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(
                    "POST",
                    self.path,
                    self.headers.get("Authorization"),
                    self.headers.get("Content-Type"),
                    self.rfile.read(length),
                )
                with service._lock:
                    service.received.append(received)
                if service.delay:
                    time.sleep(service.delay)
                self._answer(*service.answer(received))

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller stopped waiting (its timeout)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def answer(self, received: Received) -> tuple[int, str, bytes]:
        """What neuPrint would answer (unless `script` answers first)."""
        scripted = self.script(received)
        if scripted is not None:
            return scripted
        if received.path.split("?")[0] != CUSTOM_QUERY:
            return _json(404, {"message": "Not Found"})
        if received.authorization != f"Bearer {self.token}":
            return _json(401, {"error": "missing or invalid token"})
        try:
            query = received.json()
            cypher = query["cypher"]
        except (ValueError, KeyError, TypeError):
            return _json(400, {"error": "request object not formatted correctly"})
        result = run(cypher) if isinstance(cypher, str) else None
        if result is None:
            return _json(400, {"error": f"Invalid input: the stand-in cannot run {str(cypher)[:80]!r}"})
        return _json(200, result)

    @property
    def server(self) -> str:
        """The `neuprintHTTP.server` of a dataset served by this stand-in."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode()
