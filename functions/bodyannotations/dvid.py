"""DVID's `neuronjson` instance of a dataset, over HTTP: where it is (the dataset's metadata),
and calls to it with a timeout, every value URL-encoded, and its failures in our words.

The node is the dataset's `uuid`, or the one its version map names (metadata `neurons`:
`{"tag_to_uuid": {tag: uuid}, "uuid_to_tag": {uuid: tag}, "head_tag", "head_uuid"}`).
DVID unreachable, too slow or failing (5xx) -> 503 with Retry-After; DVID refusing a request
(4xx) -> that status, with DVID's words in the message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from common import errors
from common.config import settings
from common.storage import failures
from common.storage.datasets import Dataset

INSTANCE = "segmentation_annotations"  # clio's name for a dataset's body annotations
CHUNK = 1 << 20  # bytes per read of a streamed answer
MAX_ERROR_TEXT = 500  # of DVID's error text, in our message

_pool: Any = None


def _http() -> Any:
    """One pooled client per instance, made on first use (urllib3 is not needed to start)."""
    global _pool
    if _pool is None:
        import urllib3  # lazy: only a call to DVID needs it

        _pool = urllib3.PoolManager(maxsize=8, retries=False)
    return _pool


def version_map(dataset: Dataset) -> dict[str, Any]:
    """The dataset's body-annotation versions (metadata `neurons`), `{}` when it has none."""
    found = dataset.record.get("neurons")
    return found if isinstance(found, dict) else {}


def public_host(host: str) -> bool:
    """Whether `host` may be a DVID server: a name or an address on the internet, never this
    machine, the metadata server or a private network (dataset managers set `dvid`; the
    function must not be made to call what only it can reach). Names are not resolved here."""
    host = host.lower().rstrip(".")
    if not host or host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." in host  # a bare name resolves inside the network
    return address.is_global


@dataclass(frozen=True)
class Node:
    """The dataset's `neuronjson` instance at one DVID node."""

    server: str
    uuid: str

    @classmethod
    def of(cls, dataset: Dataset, version: str | None) -> Node:
        """`version` (a tag of the version map, or a node's uuid it lists) or else the
        dataset's `uuid`. 400 for a version the map does not know; 404 when the dataset names
        no DVID server or node."""
        server = dataset.record.get("dvid")
        if not isinstance(server, str) or urlsplit(server).scheme not in ("http", "https"):
            raise errors.NotFound(f"dataset {dataset.name!r} has no DVID server (metadata `dvid`)")
        if not settings().on_emulators and not public_host(urlsplit(server).hostname or ""):
            raise errors.NotFound(f"dataset {dataset.name!r} names no public DVID server (metadata `dvid`)")
        versions = version_map(dataset)
        node = dataset.record.get("uuid")
        if version:
            tags = versions.get("tag_to_uuid") or {}
            if version in tags:
                node = tags[version]
            elif version in (versions.get("uuid_to_tag") or {}):
                node = version
            else:
                raise errors.BadRequest(f"Bad version {version!r} for dataset {dataset.name!r}")
        if not isinstance(node, str) or not node:
            raise errors.NotFound(f"dataset {dataset.name!r} has no DVID node (metadata `uuid`)")
        return cls(server.rstrip("/"), node)

    def url(self, *path: str, **query: str | None) -> str:
        """`<server>/api/node/<uuid>/segmentation_annotations/<path...>?<query>`, each path
        segment and query value URL-encoded (empty and None values left out)."""
        segments = "/".join(quote(p, safe="") for p in ("api", "node", self.uuid, INSTANCE, *path))
        given = {k: v for k, v in query.items() if v}
        return f"{self.server}/{segments}" + ("?" + urlencode(given, safe=",@") if given else "")

    def call(
        self,
        method: str,
        path: tuple[str, ...],
        query: dict[str, str | None] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer of a 2xx, its body not yet read (stream it, or `.data`); raises the
        failure otherwise."""
        import urllib3  # lazy: only a call to DVID needs it

        seconds = settings().dvid_timeout_seconds
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        try:
            answer = _http().request(
                method,
                self.url(*path, **(query or {})),
                body=body,
                headers=sent,
                preload_content=False,
                decode_content=False,
                timeout=urllib3.Timeout(connect=min(seconds, 5.0), read=seconds),
            )
        except urllib3.exceptions.TimeoutError:
            raise _late() from None
        except urllib3.exceptions.HTTPError:
            raise _down() from None
        if answer.status >= 300:
            raise _refused(answer)
        return answer


def stream(answer: Any) -> Iterator[bytes]:
    """A DVID answer's bytes as they arrive (as DVID encoded them), the connection returned to
    the pool at the end. A failure midway cuts the answer short (it cannot become an error)."""
    import urllib3  # lazy: only a call to DVID needs it

    complete = False
    try:
        yield from answer.stream(CHUNK, decode_content=False)
        complete = True
    except urllib3.exceptions.HTTPError:
        raise _late() from None
    finally:
        _release(answer, complete)


def read(answer: Any) -> bytes:
    """A DVID answer's whole body (a small one: a record, a few records, field names)."""
    import urllib3  # lazy: only a call to DVID needs it

    complete = False
    try:
        data = answer.read(decode_content=True)
        complete = True
        return data
    except urllib3.exceptions.HTTPError:
        raise _late() from None
    finally:
        _release(answer, complete)


def _release(answer: Any, complete: bool) -> None:
    """The connection back to the pool; one with an answer left unread (the client went away,
    DVID failed midway, an error's text was cut) is closed, never reused."""
    if not complete:
        answer.close()
    answer.release_conn()


def _late() -> errors.ApiError:
    return failures.too_slow("DVID", settings().dvid_timeout_seconds)


def _down() -> errors.ApiError:
    return failures.unreachable("DVID")


def _refused(answer: Any) -> errors.ApiError:
    """DVID's 4xx with its words (clio's clients show `detail`); its 5xx as unavailable."""
    try:
        text = answer.read(MAX_ERROR_TEXT, decode_content=True).decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 -- the status says enough
        text = ""
    finally:
        _release(answer, complete=False)
    if answer.status >= 500 or answer.status < 400:
        return _down()
    error = (errors.NotFound if answer.status == 404 else errors.BadRequest)(
        f"DVID refused the request ({answer.status}): {text or 'no reason given'}"
    )
    error.status = answer.status
    return error
