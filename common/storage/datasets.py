"""The dataset catalog: which datasets this deployment serves, their records, generations and
data keys (SPEC §1 Exposure, §3 datasets). The datasets function writes the records; everyone
else reads them here, authz included (roles are checked against them), so the catalog sits in
the storage wing, below identity.

Records are cached per instance for at most ROLE_CACHE_SECONDS (30 s), as roles are, and dropped
at once on the instance that changes them (`forget`).

`EXPOSE` is a comma list of regular expressions over `dataset:<name>` and `twin:<path>`; a resource
that matches none is answered 404 to everyone (admins included) and left out of every list.
Unset, everything is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.cache import TTLCache
from common.config import settings
from common.names import is_dataset_name
from common.storage import store

COLLECTION = "datasets"  # datasets/{name}: the record
_records: TTLCache[str, dict[str, Any] | None] = TTLCache(lambda: settings().role_cache_seconds, 10_000)


def exposed(kind: str, name: str) -> bool:
    """True when `kind` ("dataset" or "twin") `name` is served by this deployment."""
    patterns = settings().expose
    if not patterns:
        return True
    subject = f"{kind}:{name}"
    return any(pattern.fullmatch(subject) for pattern in patterns)


def _read(name: str) -> dict[str, Any] | None:
    snap = store.collection(COLLECTION).document(name).get()
    return snap.to_dict() if snap.exists else None


def record(name: str) -> dict[str, Any] | None:
    """The dataset's record; None when it does not exist or this deployment does not serve it
    (EXPOSE), so every route and list answers an unexposed dataset as missing."""
    if not is_dataset_name(name) or not exposed("dataset", name):
        return None  # `__x__`, `..`: no dataset can have such a name, so none is looked up
    return _records.load(name, _read)


def generation(record: dict[str, Any] | None) -> str | None:
    """The id a dataset got when it was created (None for datasets made before generations).
    Data and grants are bound to it, so a new dataset of a deleted one's name starts empty."""
    return (record or {}).get("generation")


@dataclass(frozen=True)
class Dataset:
    """A dataset as a route's check found it: its name and the record it was authorized on,
    handed to the handler (`dataset`) so the request reads the record once and uses that one."""

    name: str
    record: dict[str, Any]

    @property
    def generation(self) -> str | None:
        return generation(self.record)

    @property
    def data_key(self) -> str:
        """Where its data is stored: its generation (its name, for one made before generations)."""
        return self.generation or self.name


def data_key(dataset: Dataset | str) -> str:
    """Where the data of `dataset` is stored (see Dataset.data_key); a name is looked up."""
    if isinstance(dataset, Dataset):
        return dataset.data_key
    return generation(record(dataset)) or dataset


def forget(name: str) -> None:
    """Drop this instance's copy of the record of `name`: it was just changed."""
    _records.pop(name)
