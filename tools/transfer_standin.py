"""A local stand-in for the transfer network (TRANSFER_FUNC): a real HTTP service that checks
each request's wire format as the real service reads it (SPEC §3 transfer; 400 otherwise) and
writes the part's eight 64³ chunks into Cloud Storage in the scale directory `dest` names (the
data is a test pattern, not a model's output). `make dev` serves it; the tests script its
failures and delays.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools.emulators import free_port

FIELDS = {"location", "glbstart", "start", "size", "model_name", "dest"}
PART, CHUNK, SCALE_KEY = 128, 64, "8.0x8.0x8.0"


def wire_format_problem(payload: Any) -> str | None:
    """What the real transfer network would refuse in a request, or None."""

    def point(value):
        return isinstance(value, list) and len(value) == 3 and all(type(c) is int for c in value)

    if not isinstance(payload, dict) or set(payload) != FIELDS:
        return f"the fields are {sorted(FIELDS)}"
    if not isinstance(payload["location"], str) or not payload["location"].startswith(
        ("gs://", "precomputed://gs://")
    ):
        return "location is gs://bucket/path"
    if not isinstance(payload["model_name"], str) or not payload["model_name"]:
        return "model_name is a name"
    if payload["size"] != [PART] * 3:
        return "size is [128, 128, 128]"
    if not point(payload["glbstart"]) or not point(payload["start"]):
        return "glbstart and start are [x, y, z] integers"
    if any(s - g not in (0, PART) for s, g in zip(payload["start"], payload["glbstart"])):
        return "start is glbstart + 0 or 128 on each axis"
    dest = payload["dest"]
    if not isinstance(dest, str) or not dest.startswith("gs://") or not dest.endswith(f"/{SCALE_KEY}"):
        return f"dest is gs://bucket/<volume>/{SCALE_KEY}"
    return None


def part_offset(payload: dict[str, Any]) -> tuple[int, int, int]:
    """The part's place in the 256³ cube: (0 or 128, ...)."""
    return tuple(s - g for s, g in zip(payload["start"], payload["glbstart"]))  # type: ignore[return-value]


class TransferService:
    """`script` decides each answer from the part's offset in the cube (0 or 128 per axis) and
    how many times that part was asked: "ok", "fail" (HTTP 500), "hang" (HTTP 500 after
    `hang_seconds`) or "slow" (written after `slow_seconds`). Every well-formed request is
    kept in `calls`; refused ones in `refused`.
    """

    def __init__(self):
        self.calls: list[dict[str, Any]] = []
        self.refused: list[Any] = []
        self.script = lambda offset, attempt: "ok"
        self.hang_seconds = 3.0
        self.slow_seconds = 1.0
        self._server = None
        self._lock = threading.Lock()

    def start(self) -> TransferService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                try:
                    payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                except ValueError:
                    payload = None
                problem = wire_format_problem(payload)
                if problem:
                    service.refused.append(payload)
                    self._answer(400, json.dumps({"error": problem}).encode())
                    return
                with service._lock:
                    service.calls.append(payload)
                    attempt = sum(
                        1
                        for c in service.calls
                        if c["start"] == payload["start"] and c["dest"] == payload["dest"]
                    )
                action = service.script(part_offset(payload), attempt)
                if action == "hang":
                    time.sleep(service.hang_seconds)
                if action == "slow":
                    time.sleep(service.slow_seconds)
                if action not in ("ok", "slow"):
                    self._answer(500, b"")
                    return
                service.write_chunks(payload)
                self._answer(200, b'{"ok": true}')

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller stopped waiting (its timeout), as callers of the real one do

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
        """The part's eight 64³ chunks, named as neuroglancer's precomputed format wants them
        (volume coordinates: the cube's first voxel is 0), in the directory `dest` names."""
        from common.storage import blobs

        bucket_name, _, scale_dir = payload["dest"][len("gs://") :].partition("/")
        bucket = blobs.bucket(bucket_name)
        x0, y0, z0 = part_offset(payload)
        for dx, dy, dz in ((a, b, c) for a in (0, CHUNK) for b in (0, CHUNK) for c in (0, CHUNK)):
            x, y, z = x0 + dx, y0 + dy, z0 + dz
            name = f"{scale_dir}/{x}-{x + CHUNK}_{y}-{y + CHUNK}_{z}-{z + CHUNK}"
            bucket.blob(name).upload_from_string(bytes([(x + y + z) // CHUNK % 256]) * (CHUNK**3))

    def stop(self) -> None:
        self._server.shutdown()
