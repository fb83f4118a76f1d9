"""A local stand-in for the transfer network (TRANSFER_FUNC): a real HTTP service that, for each
part it is sent, writes that part's eight 64³ chunks into Cloud Storage under `dest` (the
volume's data is a test pattern, not a model's output). `make dev` serves it, and the tests
script its failures.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools.emulators import free_port


class TransferService:
    """`script` decides each answer from the part's `start` and how many times that part was
    asked: "ok", "fail" (HTTP 500) or "hang" (answers after `hang_seconds`).
    """

    def __init__(self):
        self.calls: list[dict[str, Any]] = []
        self.script = lambda start, attempt: "ok"
        self.hang_seconds = 3.0
        self._server = None

    def start(self) -> "TransferService":
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.calls.append(payload)
                attempt = sum(1 for c in service.calls if c["start"] == payload["start"]
                              and c["dest"] == payload["dest"])
                action = service.script(tuple(payload["start"]), attempt)
                if action == "hang":
                    time.sleep(service.hang_seconds)
                if action != "ok":
                    self.send_response(500)
                    self.end_headers()
                    return
                service.write_chunks(payload)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/transfer"

    @staticmethod
    def write_chunks(payload: dict[str, Any]) -> None:
        from common import blobs
        bucket_name, _, directory = payload["dest"][len("gs://"):].partition("/")
        bucket = blobs.bucket(bucket_name)
        (x0, y0, z0), size = payload["start"], payload["size"][0]
        assert size == 128, size  # eight 64³ chunks per part
        for dx, dy, dz in ((a, b, c) for a in (0, 64) for b in (0, 64) for c in (0, 64)):
            x, y, z = x0 + dx, y0 + dy, z0 + dz
            name = f"{directory}/8.0x8.0x8.0/{x}-{x + 64}_{y}-{y + 64}_{z}-{z + 64}"
            bucket.blob(name).upload_from_string(bytes([(x + y + z) // 64 % 256]) * (64 ** 3))

    def stop(self) -> None:
        self._server.shutdown()
