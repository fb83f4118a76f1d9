"""A local stand-in for a DVID server's `neuronjson` instance (what the bodyannotations function
calls): a real HTTP server keeping DVID's semantics for the endpoints clio's proxy uses, with
versions by node uuid. `make dev` serves it; the tests read what reached it and script failures.

Semantics follow DVID's neuronjson datatype: `fields`; `all` (`show`, `fields`; gzip-encoded when
asked); `keyvalues?json=true` (GET with a JSON list of ids -> `{"id": record}` in the order asked,
absent ones left out); `query` (an object, values may be lists, "re/..." and "exists/0|1", or a
list of objects ORed; `show`, `onlyid`, `fields`; ascending body id); `key/<id>` GET, POST
(`u` required, fields merged unless `replace=true`, `conditional` fields kept where set, `null`
deletes a field, `<field>_user` / `<field>_time` set for each changed field) and DELETE.
Records are Python objects with exact integers, answered as Go's encoder writes maps (keys
sorted, compact), so body ids above 2^53 survive.
"""

from __future__ import annotations

import datetime
import gzip
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tools.emulators import free_port

INSTANCE = "segmentation_annotations"
_META = ("_user", "_time")
CHUNK = 1 << 20  # bytes per chunk of a streamed `all`


@dataclass
class Call:
    """One request as it reached the stand-in."""

    method: str
    path: str
    query: str  # the raw query string
    body: bytes

    @property
    def args(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.query, keep_blank_values=True))


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def shown(record: dict[str, Any], show: str, fields: str = "") -> dict[str, Any]:
    """A record as DVID answers it: `<field>_user` / `<field>_time` only as `show` asks, and
    only `fields` (with `bodyid`) when given."""
    keep_user, keep_time = show in ("user", "all"), show in ("time", "all")
    wanted = set(fields.split(",")) | {"bodyid"} if fields else None
    out = {}
    for key, value in record.items():
        base = key[:-5] if key.endswith(_META) else key
        if wanted is not None and base not in wanted:
            continue
        if key.endswith("_user") and not keep_user or key.endswith("_time") and not keep_time:
            continue
        out[key] = value
    return out


def _matches(record: dict[str, Any], query: dict[str, Any]) -> bool:
    for field, wanted in query.items():
        value = record.get(field)
        options = wanted if isinstance(wanted, list) else [wanted]
        if not any(_match_one(value, option) for option in options):
            return False
    return True


def _match_one(value: Any, option: Any) -> bool:
    if isinstance(option, str) and option.startswith("exists/"):
        return (value is not None) == (option == "exists/1")
    if isinstance(option, str) and option.startswith("re/"):
        return isinstance(value, str) and re.match(option[3:], value) is not None
    if isinstance(value, list):
        return option in value
    if isinstance(option, str) and isinstance(value, int) and option.isdigit():
        return int(option) == value  # body ids written as text
    return value == option


def updated(
    old: dict[str, Any] | None, new: dict[str, Any], user: str, conditional: list[str], replace: bool
):
    """DVID's update of a stored record by a POSTed one (neuronjson `updateJSON`)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = dict(old or {})
    result = dict(new)
    deleted = {field for field, value in new.items() if value is None}
    for field in deleted:
        del result[field]
        old.pop(field, None)
    changed = {f for f in result if f not in old or old[f] != result[f]}
    if not replace:
        for field, value in old.items():
            if field not in result:
                result[field] = value
            elif field in conditional:
                result[field] = value
                changed.discard(field)
    for field in changed:
        if field in ("bodyid", "user") or field.endswith(_META):
            continue
        if field + "_user" not in new:
            result[field + "_user"] = user
        if field + "_time" not in new:
            result[field + "_time"] = now
    return result


class DvidService:
    """Nodes by uuid, each `{bodyid: record}`; every request kept in `calls`. `script(call)`
    answers "ok", "fail" (HTTP 500) or "hang" (HTTP 500 after `hang_seconds`)."""

    def __init__(self, port: int | None = None):
        self.port = port
        self.nodes: dict[str, dict[int, dict[str, Any]]] = {}
        self.calls: list[Call] = []
        self.script = lambda call: "ok"
        self.hang_seconds = 3.0
        self._all: dict[tuple[str, str, str], bytes] = {}  # `all` answers, until the node changes
        self._lock = threading.Lock()
        self._server: Any = None

    # -- set-up ---------------------------------------------------------------------------------
    def add_node(self, uuid: str, records: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self.nodes[uuid] = {int(r["bodyid"]): dict(r) for r in records or []}
            self._forget(uuid)

    def reset(self) -> None:
        with self._lock:
            self.nodes.clear()
            self.calls.clear()
            self._all.clear()
        self.script = lambda call: "ok"

    def _forget(self, uuid: str) -> None:
        for key in [k for k in self._all if k[0] == uuid]:
            del self._all[key]

    # -- serving --------------------------------------------------------------------------------
    def start(self) -> DvidService:
        self._server = make_server(
            "127.0.0.1", self.port or free_port(), self._wsgi, threaded=True, request_handler=_Quiet
        )
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        call = Call(request.method, request.path, request.query_string.decode(), request.get_data())
        with self._lock:
            self.calls.append(call)
        action = self.script(call)
        if action == "hang":
            time.sleep(self.hang_seconds)
        if action != "ok":
            return Response(b"stand-in failure", status=500)(environ, start_response)
        try:
            response = self._answer(request, call)
        except ValueError as exc:  # DVID answers every refusal 400 with its reason as text
            response = Response(str(exc).encode(), status=400, mimetype="text/plain")
        return response(environ, start_response)

    def _answer(self, request: Request, call: Call) -> Response:
        parts = call.path.strip("/").split("/")
        if len(parts) < 5 or parts[:2] != ["api", "node"] or parts[3] != INSTANCE:
            raise ValueError(f"no such endpoint {call.path}")
        uuid, endpoint, rest = parts[2], parts[4], parts[5:]
        if uuid not in self.nodes:
            raise ValueError(f"no node {uuid}")
        node, args = self.nodes[uuid], call.args
        show, fields = args.get("show", ""), args.get("fields", "")
        method = call.method
        if endpoint == "fields" and method == "GET":
            names = sorted({k for r in node.values() for k in r if not k.endswith(_META)})
            return _json(encode(names))
        if endpoint == "all" and method == "GET":
            return self._all_answer(
                uuid, node, show, fields, "gzip" in request.headers.get("Accept-Encoding", "")
            )
        if endpoint == "keyvalues" and method == "GET" and args.get("json") == "true":
            keys = [str(k) for k in json.loads(call.body)]
            found = [(k, node[int(k)]) for k in keys if k.isdigit() and int(k) in node]
            return _json(
                b"{" + b",".join(encode(k) + b":" + encode(shown(r, show, fields)) for k, r in found) + b"}"
            )
        if endpoint == "query" and method in ("GET", "POST"):
            query = json.loads(call.body)
            queries = query if isinstance(query, list) else [query]
            hits = [r for _, r in sorted(node.items()) if any(_matches(r, q) for q in queries)]
            if args.get("onlyid") == "true":
                return _json(encode([r["bodyid"] for r in hits]))
            return _json(encode([shown(r, show, fields) for r in hits]))
        if endpoint == "key" and len(rest) == 1:
            return self._key(uuid, node, rest[0], call, show, fields)
        raise ValueError(f"no such endpoint {method} {call.path}")

    def _all_answer(self, uuid, node, show: str, fields: str, gzipped: bool) -> Response:
        key = (uuid, show, fields)
        with self._lock:
            if key not in self._all:
                self._all[key] = (
                    b"[" + b",".join(encode(shown(r, show, fields)) for _, r in sorted(node.items())) + b"]"
                )
            data = self._all[key]
        if gzipped:
            return Response(
                gzip.compress(data, 1), mimetype="application/json", headers={"Content-Encoding": "gzip"}
            )
        chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
        return Response(chunks, mimetype="application/json")  # chunked, as DVID streams it

    def _key(self, uuid, node, key: str, call: Call, show: str, fields: str) -> Response:
        if not key.isdigit():
            raise ValueError(f"key {key!r} must be a valid uint64")
        bodyid = int(key)
        if call.method == "GET":
            if bodyid not in node:
                return Response(f"Key {key!r} not found".encode(), status=404, mimetype="text/plain")
            return _json(encode(shown(node[bodyid], show, fields)))
        if call.method == "DELETE":
            with self._lock:
                node.pop(bodyid, None)
                self._forget(uuid)
            return Response(b"", status=200)
        if call.method == "POST":
            args = call.args
            if not args.get("u"):
                raise ValueError("cannot alter neuronjson data without a valid user")
            new = json.loads(call.body)
            if not isinstance(new, dict) or new.get("bodyid") != bodyid:
                raise ValueError(f"neuronjson 'bodyid' field must match key {bodyid}")
            conditional = [c for c in args.get("conditional", "").split(",") if c]
            with self._lock:
                node[bodyid] = updated(
                    node.get(bodyid), new, args["u"], conditional, args.get("replace") == "true"
                )
                self._forget(uuid)
            return Response(b"", status=200)
        raise ValueError(f"key endpoint does not support {call.method}")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


def _json(data: bytes) -> Response:
    return Response(data, mimetype="application/json")
