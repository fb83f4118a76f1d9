"""May they: roles per user (global and per dataset) and the predicates of SPEC §2, against
the dataset catalog's records (common.storage.datasets).

User records are cached per instance for at most ROLE_CACHE_SECONDS (30 s), and dropped at once
on the instance that changes them (`forget_user`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common import errors
from common.cache import TTLCache
from common.config import settings
from common.storage import datasets, store
from common.storage.datasets import Dataset  # what a dataset check hands its handler
from common.web.http import Check, Req

READ_ROLES = frozenset({"clio_read", "clio_general", "clio_write", "dataset_admin"})
WRITE_OWN_ROLES = frozenset({"clio_general", "clio_write", "dataset_admin"})
WRITE_OTHERS_ROLES = frozenset({"clio_write", "dataset_admin"})
MANAGE_ROLES = frozenset({"dataset_admin"})  # on the dataset itself only, never global
PUBLIC_GRANTS = frozenset({"clio_general"})


USERS = "users"  # users/{email}: roles, grants, groups (written by the users function)
_users: TTLCache[str, dict[str, Any] | None] = TTLCache(lambda: settings().role_cache_seconds, 10_000)


def _read_user(email: str) -> dict[str, Any] | None:
    snap = store.collection(USERS).document(email).get()
    return snap.to_dict() if snap.exists else None


def user_record(email: str) -> dict[str, Any] | None:
    return _users.load(email, _read_user)


def forget_user(email: str) -> None:
    _users.pop(email)


@dataclass(frozen=True)
class Caller:
    email: str
    via: str
    name: str = ""
    global_roles: frozenset[str] = frozenset()
    datasets: dict[str, frozenset[str]] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    is_owner: bool = False
    # The generation of each dataset grant at the time it was given (None: given before the
    # dataset existed). A grant counts only on that generation of the dataset.
    grant_generations: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        return self.is_owner or "admin" in self.global_roles

    def roles_on(self, dataset: str, record: dict[str, Any] | None = None) -> frozenset[str]:
        """Roles on `dataset`, global ones and a public dataset's grant included.

        `record` is the dataset's record when the caller has it at hand (saves a lookup).
        """
        record = record if record is not None else datasets.record(dataset)
        roles = self.global_roles | self.granted_on(dataset, record)
        if (record or {}).get("public") is True:
            roles = roles | PUBLIC_GRANTS
        return roles

    def granted_on(self, dataset: str, record: dict[str, Any] | None) -> frozenset[str]:
        """The roles granted on this generation of `dataset` (a grant on a deleted dataset of the
        same name counts for nothing)."""
        bound = self.grant_generations.get(dataset)
        if bound is not None and bound != datasets.generation(record):
            return frozenset()
        return self.datasets.get(dataset, frozenset())

    def _has(self, dataset: str, wanted: frozenset[str], record: dict[str, Any] | None) -> bool:
        return self.is_admin or bool(self.roles_on(dataset, record) & wanted)

    def can_read(self, dataset: str, record: dict[str, Any] | None = None) -> bool:
        return self._has(dataset, READ_ROLES, record)

    def can_write_own(self, dataset: str, record: dict[str, Any] | None = None) -> bool:
        return self._has(dataset, WRITE_OWN_ROLES, record)

    def can_write_others(self, dataset: str, record: dict[str, Any] | None = None) -> bool:
        return self._has(dataset, WRITE_OTHERS_ROLES, record)

    def can_manage(self, dataset: str, record: dict[str, Any] | None = None) -> bool:
        if self.is_admin:
            return True
        record = record if record is not None else datasets.record(dataset)
        return record is not None and bool(self.granted_on(dataset, record) & MANAGE_ROLES)

    def profile(self) -> dict[str, Any]:
        """The caller's roles as /roles shows them (OWNER's admin included; public grants not)."""
        global_roles = set(self.global_roles) | ({"admin"} if self.is_owner else set())
        return {
            "email": self.email,
            "name": self.name,
            "global_roles": sorted(global_roles),
            "datasets": {
                ds: sorted(roles) for ds, roles in sorted(self.datasets.items()) if self._listed(ds)
            },
            "groups": list(self.groups),
        }

    def _listed(self, dataset: str) -> bool:
        """A grant /roles shows: on a dataset this deployment serves, and not a stale one."""
        if not datasets.exposed("dataset", dataset):
            return False
        bound = self.grant_generations.get(dataset)
        return bound is None or bound == datasets.generation(datasets.record(dataset))


def caller_for(email: str, via: str) -> Caller:
    record = user_record(email) or {}
    if record.get("disabled") is True:
        raise errors.Forbidden("this account is disabled")
    return Caller(
        email=email,
        via=via,
        name=record.get("name", ""),
        global_roles=frozenset(record.get("global_roles", ())),
        datasets={ds: frozenset(roles) for ds, roles in (record.get("datasets") or {}).items()},
        groups=tuple(record.get("groups", ())),
        grant_generations=dict(record.get("grant_generations") or {}),
        is_owner=bool(settings().owner) and email == settings().owner,
    )


# -- route checks ---------------------------------------------------------------------------


def _any(req: Req, params: dict[str, Any]) -> None:
    return None


def _admin(req: Req, params: dict[str, Any]) -> None:
    if not req.caller.is_admin:
        raise errors.Forbidden("this needs the admin role")


AUTHENTICATED = Check("any authenticated user", _any)
ADMIN = Check("admin", _admin)


@dataclass(frozen=True)
class Need:
    """What a route needs on a dataset. A symbol (`authz.WRITE_OWN`), never a string looked up
    at run time, so a misspelt one fails when the module loads, not on the first request."""

    name: str
    test: Callable[[Caller, str, dict[str, Any] | None], bool]


READ = Need("read", Caller.can_read)
WRITE_OWN = Need("write_own", Caller.can_write_own)
WRITE_OTHERS = Need("write_others", Caller.can_write_others)
MANAGE = Need("manage", Caller.can_manage)


def require_dataset(caller: Caller, name: str, need: Need) -> Dataset:
    """The dataset, if the caller has `need` on it (one lookup of its record).

    A dataset the caller may not read is answered as missing (404), so names do not leak;
    one they may read but not act on is 403.
    """
    return require(caller, name, datasets.record(name), need)


def require(caller: Caller, name: str, record: dict[str, Any] | None, need: Need) -> Dataset:
    """require_dataset on a record already at hand."""
    if record is None or not caller.can_read(name, record):
        raise errors.NotFound(f"dataset {name!r} not found")
    if not need.test(caller, name, record):
        raise errors.Forbidden(f"this needs {need.name.replace('_', ' ')} on dataset {name!r}")
    return Dataset(name, record)


def on_dataset(need: Need, param: str = "name") -> Check:
    """A route check: the caller needs `need` (READ, WRITE_OWN, ...) on the path's dataset,
    which the handler receives as `dataset` (a Dataset)."""

    def run(req: Req, params: dict[str, Any]) -> dict[str, Dataset]:
        return {"dataset": require_dataset(req.caller, params[param], need)}

    return Check(f"{need.name} on the dataset", run)


def group_members(groups: list[str]) -> set[str]:
    """Emails of the users in any of `groups` (queried, never the whole users collection)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    members: set[str] = set()
    for chunk in store.chunks(sorted(set(groups)), store.MAX_IN_VALUES):
        query = store.collection(USERS).where(filter=FieldFilter("groups", "array_contains_any", chunk))
        members.update(snap.id for snap in store.stream(query.select([])))
    return members
