"""The resources of a Gatehouse client: `client.datasets`, `client.annotations`, ... Each method
is one route of the HTTP contract (docs/api.md); answers are the server's JSON, objects as
`Record`s (dicts whose fields read as attributes too), and every `list()` a `Listing` (an
iterator of records)."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from gatehouse import errors
from gatehouse._http import Resource, segment
from gatehouse.records import (
    Annotation,
    ApiKey,
    Dataset,
    Listing,
    Located,
    Record,
    TransferRecord,
    User,
    keyed,
    listing,
    pandas,
)

if TYPE_CHECKING:
    from gatehouse.client import Gatehouse

Location = Sequence[int]  # (x, y, z)


def _xyz(location: Location) -> dict[str, int]:
    x, y, z = location
    return {"x": int(x), "y": int(y), "z": int(z)}


def _csv(value: str | Iterable[str] | None) -> str | None:
    return value if value is None or isinstance(value, str) else ",".join(value)


def _bar(client: Gatehouse, progress: bool | None, **kw: Any):
    from tqdm.auto import tqdm

    return tqdm(disable=not (client.progress if progress is None else progress), **kw)


class Datasets(Resource):
    """`/datasets`: metadata, attachments, finalize, audit logs, deletion."""

    def list(self) -> Listing[Dataset]:
        """Every dataset the caller may read, each with its `name`."""
        return keyed(self._client.get("/datasets"), Dataset, "name", "datasets")

    def get(self, name: str) -> Dataset:
        return Dataset({"name": name, **self._client.get(f"/datasets/{segment(name)}")})

    def create(self, name: str, description: str = "", **fields: Any) -> dict[str, Any]:
        """Creates (or replaces) one dataset: `location`, `public`, `tags`, `transfer`, ... (admin)."""
        return self._client.post("/datasets", json={name: {"description": description, **fields}})

    def update(self, name: str, **fields: Any) -> dict[str, Any]:
        """Merges `fields` into the dataset's metadata (`None` removes a free-form field)."""
        return self._client.put(f"/datasets/{segment(name)}", json=fields)

    def delete(self, *names: str) -> dict[str, Any]:
        """Deletes datasets with everything stored under them (admin); see `deletions()`."""
        return self._client.delete("/datasets", json=list(names))

    def finalize(self, name: str) -> dict[str, Any]:
        return self._client.post(f"/datasets/{segment(name)}/finalize")

    def logs(self, name: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """The dataset's audit entries, newest first, fetched a page at a time."""
        return self._client.pages(f"/datasets/{segment(name)}/logs", page_size=page_size)

    def attachments(self, name: str) -> builtins.list[Record]:
        """`[{"name", "size", "modified", "url"}]`, each URL signed for 5 minutes."""
        return [Record(a) for a in self._client.get(f"/datasets/{segment(name)}/attachments")]

    def attach(
        self, name: str, file: str | os.PathLike | bytes | BinaryIO, filename: str | None = None
    ) -> dict[str, Any]:
        """Uploads an attachment: a path, bytes or an open binary file (`filename` names it)."""
        if isinstance(file, (str, os.PathLike)):
            filename = filename or os.path.basename(os.fspath(file))
            with open(file, "rb") as f:
                content = f.read()
        elif isinstance(file, bytes):
            content = file
        else:
            content = file.read()
            filename = filename or os.path.basename(getattr(file, "name", "") or "")
        if not filename:
            raise ValueError("name the attachment: filename=...")
        return self._client.post(
            f"/datasets/{segment(name)}/attachments",
            data={"name": filename},
            files={"attachment": (filename, content, "application/octet-stream")},
        )

    def detach(self, name: str, filename: str) -> None:
        self._client.delete(f"/datasets/{segment(name)}/attachments/{segment(filename)}")

    def deletions(self) -> builtins.list[Record]:
        """Deleted datasets and how far each purge got (admin)."""
        return [Record(d) for d in self._client.get("/datasets/_deletions")]

    def deletion(self, deletion_id: str) -> dict[str, Any]:
        return self._client.get(f"/datasets/_deletions/{segment(deletion_id)}")

    def resume_deletion(self, deletion_id: str) -> dict[str, Any]:
        return self._client.post(f"/datasets/_deletions/{segment(deletion_id)}/resume")


class AnnotationsV1(Resource):
    """Version 1: one free-form object per user and location."""

    def list(self, dataset: str) -> Listing[Located]:
        """The caller's annotations, each with its `locationkey` `"x_y_z"`."""
        answer = self._client.get(f"/annotations/{segment(dataset)}")
        return keyed(answer, Located, "locationkey", f"version 1 annotations of {dataset}")

    def put(self, dataset: str, location: Location, value: dict[str, Any]) -> dict[str, Any]:
        return self._client.post(f"/annotations/{segment(dataset)}", params=_xyz(location), json=value)

    def delete(self, dataset: str, location: Location) -> None:
        self._client.delete(f"/annotations/{segment(dataset)}", params=_xyz(location))


class Annotations(Resource):
    """Typed annotations (version 2): `{"kind": "point"|"lineseg"|"sphere", "pos", "prop"?,
    "tags"?, "title"?, "description"?, "user"?}`. Version 1 is `client.annotations.v1`."""

    MAX_PER_REQUEST = 10_000  # the server's limit on one list

    def __init__(self, client: Gatehouse):
        super().__init__(client)
        self.v1 = AnnotationsV1(client)

    def list(
        self,
        dataset: str,
        *,
        user: str | None = None,
        groups: str | Iterable[str] | None = None,
        kind: str | None = None,
        tag: str | None = None,
        page_size: int = 1000,
    ) -> Listing[Annotation]:
        """Every matching annotation, fetched `page_size` at a time as the listing is read."""
        params = {"user": user, "groups": _csv(groups), "kind": kind, "tag": tag}
        pages = self._client.pages(f"/annotations/v2/{segment(dataset)}", params, page_size)
        return listing(pages, Annotation, f"annotations of {dataset}")

    def add(
        self,
        dataset: str,
        annotation: dict[str, Any] | None = None,
        *,
        replace: bool = True,
        conditional: Iterable[str] | None = None,
        move_key: str | None = None,
        **fields: Any,
    ) -> str:
        """Writes one annotation (a dict, or its fields: `kind="point", pos=[x, y, z]`) -> its key.
        `replace=False` merges into the stored one; `conditional` fields are kept where set;
        `move_key` deletes that key in the same commit."""
        body = {**(annotation or {}), **fields}
        params = self._write_params(replace, conditional)
        params["move_key"] = move_key
        return self._client.post(f"/annotations/v2/{segment(dataset)}", params=params, json=body)["key"]

    def upload(
        self,
        dataset: str,
        annotations: Iterable[dict[str, Any]],
        *,
        chunk_size: int = 5000,
        replace: bool = True,
        conditional: Iterable[str] | None = None,
        progress: bool | None = None,
    ) -> builtins.list[str]:
        """Writes many annotations, `chunk_size` per request (at most 10,000), with a progress
        bar -> their keys. Each chunk is validated whole before it is written and writes are
        idempotent by key, so after a failure the same upload may simply be run again."""
        if not 1 <= chunk_size <= self.MAX_PER_REQUEST:
            raise ValueError(f"chunk_size is 1-{self.MAX_PER_REQUEST}")
        items = annotations if isinstance(annotations, list) else list(annotations)
        params = self._write_params(replace, conditional)
        keys: list[str] = []
        with _bar(self._client, progress, total=len(items), unit="ann", desc=f"upload {dataset}") as bar:
            for start in range(0, len(items), chunk_size):
                chunk = items[start : start + chunk_size]
                answer = self._client.post(f"/annotations/v2/{segment(dataset)}", params=params, json=chunk)
                keys.extend(answer["keys"])
                bar.update(len(chunk))
        return keys

    @staticmethod
    def _write_params(replace: bool, conditional: Iterable[str] | None) -> dict[str, Any]:
        return {"replace": None if replace else "false", "conditional": _csv(conditional)}

    def delete(self, dataset: str, key: str, *, user: str | None = None) -> None:
        self._client.delete(f"/annotations/v2/{segment(dataset)}/{segment(key)}", params={"user": user})

    def as_dataframe(self, dataset: str, **filters: Any):
        """The annotations `list()` gives, as a pandas DataFrame (`prop` flattened to `prop.<name>`
        columns). Needs pandas: `pip install "./client[pandas]"`."""
        pd = pandas("as_dataframe()")
        records = self.list(dataset, **filters).to_list()
        columns = ["key", "user", "kind", "pos"]
        if not records:
            return pd.DataFrame(columns=columns)
        frame = pd.json_normalize(records, max_level=1)
        first = [c for c in columns if c in frame.columns]  # the identifying columns lead
        return frame[first + [c for c in frame.columns if c not in first]]


class SavedSearches(Resource):
    """`/savedsearches`: the caller's saved searches, one per location."""

    def list(self, dataset: str) -> Listing[Located]:
        """The caller's saved searches, each with its `locationkey` `"x_y_z"`."""
        answer = self._client.get(f"/savedsearches/{segment(dataset)}")
        return keyed(answer, Located, "locationkey", f"saved searches of {dataset}")

    def save(self, dataset: str, location: Location, search: dict[str, Any]) -> dict[str, Any]:
        return self._client.post(f"/savedsearches/{segment(dataset)}", params=_xyz(location), json=search)

    def delete(self, dataset: str, location: Location) -> None:
        self._client.delete(f"/savedsearches/{segment(dataset)}", params=_xyz(location))


class Atlas(Resource):
    """`/atlas`: notable places, verified by curators."""

    def list(self, dataset: str) -> Listing[Located]:
        """The caller's entries, each with its `locationkey` `"x_y_z"`."""
        answer = self._client.get(f"/atlas/{segment(dataset)}")
        return keyed(answer, Located, "locationkey", f"atlas entries of {dataset}")

    def all(self) -> Listing[Record]:
        """Verified entries of readable datasets, the caller's own, and what the caller curates."""
        return listing(self._client.get("/atlas/all"), Record, "atlas entries")

    def add(
        self, dataset: str, location: Location, title: str, description: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {"title": title, **({"description": description} if description is not None else {}), **fields}
        return self._client.post(f"/atlas/{segment(dataset)}", params=_xyz(location), json=body)

    def delete(self, dataset: str, location: Location) -> None:
        self._client.delete(f"/atlas/{segment(dataset)}", params=_xyz(location))

    def verify(self, entry_id: str, verified: bool | None = None) -> dict[str, Any]:
        """Toggles an entry's `verified`, or sets it (needs write_others on its dataset)."""
        body = None if verified is None else {"verified": verified}
        return self._client.post(f"/atlas/verify/{segment(entry_id)}", json=body)


class Signatures(Resource):
    """`/signatures`: the nearest stored point's signature, and points of similar signature."""

    def at(self, dataset: str, location: Location) -> dict[str, Any]:
        """`{"point", "signature"}` of the nearest stored point within 100 voxels (NotFound when none)."""
        return self._client.get(f"/signatures/atlocation/{segment(dataset)}", params=_xyz(location))

    def like(self, dataset: str, location: Location) -> list[dict[str, Any]]:
        """`[{"point", "dist", "score"}]`, best first (empty when there are none)."""
        return self._client.get(f"/signatures/likelocation/{segment(dataset)}", params=_xyz(location))[
            "matches"
        ]


class TransferJob:
    """A transfer: `addr` (the neuroglancer link), `source` (the volume), `id`; `status()` reads
    it, `wait()` polls until it is done."""

    def __init__(self, client: Gatehouse, job_id: str, addr: str | None = None, source: str | None = None):
        self._client, self.id, self.addr, self.source = client, job_id, addr, source

    def __repr__(self) -> str:
        return f"TransferJob({self.id!r})"

    def status(self) -> dict[str, Any]:
        """The job with its parts: `{"status", "parts": {key: {"start", "status", "attempts", "error"}}, ...}`."""
        job = self._client.get(f"/transfer/{segment(self.id)}")
        self.addr, self.source = job.get("addr", self.addr), job.get("source", self.source)
        return job

    def wait(
        self, timeout: float | None = None, *, poll: float = 1.0, progress: bool | None = None
    ) -> dict[str, Any]:
        """Polls until the job is `done` (returns it) or `failed` (raises JobFailed), showing the
        parts done; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with _bar(self._client, progress, total=8, unit="part", desc=f"transfer {self.id[:8]}") as bar:
            while True:
                job = self.status()
                done = sum(p.get("status") == "done" for p in job.get("parts", {}).values())
                bar.total = len(job.get("parts", {})) or bar.total
                bar.update(done - bar.n)
                if job.get("status") == "done":
                    return job
                if job.get("status") == "failed":
                    raise errors.JobFailed(
                        502,
                        "job_failed",
                        str(job.get("error") or "the transfer failed"),
                        job.get("request_id"),
                        job,
                    )
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"transfer {self.id} is still {job.get('status')} after {timeout} s")
                time.sleep(poll)
                poll = min(poll * 1.5, 10.0)


class Transfer(Resource):
    """`/transfer`: a 256³ cube through a transfer network's model, shown in neuroglancer."""

    def submit(self, dataset: str, model_name: str, center: Location) -> TransferJob:
        answer = self._client.post(
            "/transfer",
            json={"dataset": dataset, "model_name": model_name, "center": [int(c) for c in center]},
        )
        return TransferJob(self._client, answer["job"], answer["addr"], answer["source"])

    def job(self, job_id: str) -> TransferJob:
        return TransferJob(self._client, job_id)

    def get(self, job_id: str) -> dict[str, Any]:
        return self.job(job_id).status()

    def list(self, *, page_size: int = 100) -> Listing[TransferRecord]:
        """The caller's jobs (an admin's: everyone's), newest first."""
        return listing(self._client.pages("/transfer", page_size=page_size), TransferRecord, "transfer jobs")


class Users(Resource):
    """`/users`: who may do what (admin), and the caller's own record."""

    def me(self) -> User:
        return User(self._client.get("/users/me"))

    def list(self) -> Listing[User]:
        """Every user (admin), each with its `email`."""
        return keyed(self._client.get("/users"), User, "email", "users")

    def update(self, email: str, **fields: Any) -> dict[str, Any]:
        """Creates or updates one user: `name`, `global_roles`, `datasets={name: [roles]}`,
        `groups`, `disabled`; a field given replaces that field, others are kept."""
        return self._client.post("/users", json={email: fields})

    def delete(self, *emails: str) -> dict[str, Any]:
        return self._client.delete("/users", json=list(emails))


class Keys(Resource):
    """API keys (`ghk_...`): the caller's own, or another user's for admins (`user=`)."""

    def _base(self, user: str | None) -> str:
        return f"/users/{segment(user)}/keys" if user else "/users/me/keys"

    def create(
        self, name: str, expires_in_days: int | None = None, *, user: str | None = None
    ) -> dict[str, Any]:
        """`{"id", "name", "key", "created_at", "expires_at"}`: the key is shown only here."""
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return self._client.post(self._base(user), json=body)

    def list(self, *, user: str | None = None) -> Listing[ApiKey]:
        """The keys (without their secrets), with `last_used_at`."""
        return listing(self._client.get(self._base(user)), ApiKey, "API keys")

    def revoke(self, key_id: str, *, user: str | None = None) -> None:
        self._client.delete(f"{self._base(user)}/{segment(key_id)}")
