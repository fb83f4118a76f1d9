"""What answers come back as: `Record`s (the server's JSON objects, read as dicts or as
attributes), a `Listing` (what every `list()` returns: an iterator of records, fetched a page at
a time where the server pages), and `Table` (a result shaped `{"columns", "rows"}`, with
`.to_dataframe()`)."""

from __future__ import annotations

import builtins
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

PANDAS_INSTALL = 'pip install "./client[pandas]" (from a Gatehouse checkout), or pip install pandas'


def pandas(what: str) -> Any:
    """The pandas module, or an ImportError that says which install gives it."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(f"{what} needs pandas: {PANDAS_INSTALL}") from None
    return pd


class Record(dict[str, Any]):
    """A JSON object of the server's: `record["name"]` or `record.name`. It is a dict, so it
    compares and serializes as the server's JSON does; a field named like a dict method
    (`items`, `keys`, `get`, ...) is read as `record["items"]`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            fields = ", ".join(k for k in self if isinstance(k, str)) or "none"
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r} (its fields: {fields})"
            ) from None

    def __dir__(self) -> builtins.list[str]:
        return sorted(set(super().__dir__()) | {k for k in self if isinstance(k, str) and k.isidentifier()})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


class Dataset(Record):
    """A dataset's metadata (`name` added from the listing's key)."""

    name: str
    description: str


class User(Record):
    """A user's record (`email` added from the listing's key)."""

    email: str
    global_roles: builtins.list[str]
    datasets: dict[str, builtins.list[str]]


class ApiKey(Record):
    """An API key's record (never its secret, but on creation)."""

    id: str
    name: str


class Annotation(Record):
    """A typed annotation (version 2): `key`, `user`, `kind`, `pos`, ..."""

    key: str
    user: str
    kind: str
    pos: builtins.list[int]


class Located(Record):
    """An entry kept at a location (v1 annotations, saved searches, atlas entries):
    `locationkey` is its `"x_y_z"`."""

    locationkey: str


class TransferRecord(Record):
    """A transfer job as listed: `id`, `status`, ..."""

    id: str
    status: str


class EndpointInfo(Record):
    """A twin endpoint as listed: `path`, `description`, `kind`, `dataset`, `parameters`, ..."""

    path: str
    description: str
    parameters: dict[str, Any]


T = TypeVar("T")


class Listing(Iterator[T], Generic[T]):
    """What every `list()` returns: an iterator of typed items, fetched as it is read (a page at
    a time where the server pages). `list(listing)` or `listing.to_list()` reads them all,
    `listing.to_dataframe()` makes a pandas DataFrame; its repr shows the first few."""

    SHOWN = 5

    def __init__(self, items: Iterable[T], what: str = "items"):
        self._source: Iterator[T] = iter(items)
        self._peeked: deque[T] = deque()
        self._what = what

    def __iter__(self) -> Listing[T]:
        return self

    def __next__(self) -> T:
        if self._peeked:
            return self._peeked.popleft()
        return next(self._source)

    def _peek(self, n: int) -> builtins.list[T]:
        while len(self._peeked) < n:
            try:
                self._peeked.append(next(self._source))
            except StopIteration:
                break
        return builtins.list(self._peeked)[:n]

    def __repr__(self) -> str:
        first = self._peek(self.SHOWN + 1)
        shown = ",\n ".join(repr(item) for item in first[: self.SHOWN])
        more = ",\n ... (more: iterate, or .to_list())" if len(first) > self.SHOWN else ""
        return f"Listing of {self._what}: [{shown}{more}]"

    def __getitem__(self, key: Any) -> Any:
        # `gh.datasets.list()["mb20"]` read a dict before every list() became a Listing.
        raise TypeError(
            f"a Listing of {self._what} is an iterator, not a dict or a list: iterate it, take "
            ".to_list(), or look one up by name with the resource's get() "
            "(e.g. gh.datasets.get(name), or {d.name: d for d in gh.datasets.list()})"
        )

    def to_list(self) -> builtins.list[T]:
        """Every item not yet read."""
        return builtins.list(self)

    def to_dataframe(self) -> Any:
        """Every item not yet read, as a pandas DataFrame (one column per field)."""
        pd = pandas("to_dataframe()")
        return pd.DataFrame.from_records(self.to_list())


def listing(items: Iterable[Any], kind: Callable[[Any], T], what: str) -> Listing[T]:
    return Listing((kind(item) for item in items), what)


def keyed(answer: dict[str, Any], kind: type[Record], key: str, what: str) -> Listing[Any]:
    """A `{name: record}` answer as a listing of records, each with its name as `key`."""
    return Listing((kind({key: name, **(value or {})}) for name, value in answer.items()), what)


class Table(dict[str, Any]):
    """A result shaped `{"columns": [...], "rows": [[...], ...]}` (a SQL endpoint's, say): still
    the dict the server sent, plus `.to_dataframe()` (pandas) and `.records()`."""

    @property
    def columns(self) -> builtins.list[str]:
        return builtins.list(self["columns"])

    @property
    def rows(self) -> builtins.list[builtins.list[Any]]:
        return builtins.list(self["rows"])

    def records(self) -> builtins.list[dict[str, Any]]:
        """The rows as `{column: value}` dicts."""
        return [dict(zip(self["columns"], row)) for row in self["rows"]]

    def to_dataframe(self) -> Any:
        """The table as a pandas DataFrame. Needs pandas: `pip install "./client[pandas]"`."""
        pd = pandas("to_dataframe()")
        return pd.DataFrame(self["rows"], columns=self["columns"])


def tabled(result: Any) -> Any:
    """A result shaped `{"columns": [...], "rows": [...]}` as a Table; anything else as it is."""
    if (
        isinstance(result, dict)
        and not isinstance(result, Table)
        and isinstance(result.get("columns"), list)
        and isinstance(result.get("rows"), list)
    ):
        return Table(result)
    return result
