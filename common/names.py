"""What a dataset name is (SPEC §1), as plain patterns: the storage layer checks names with it
at every lookup, without loading pydantic (common.models types bodies with the same patterns)."""

from __future__ import annotations

import re

# clio's names are storable: dataset names carry versions (`manc:v1.0`). A name is a Firestore
# document id or a field, never a path: `/` stays out.
DATASET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
RESERVED_DATASET_NAMES = frozenset({"all", "v2"})


def is_dataset_name(value: str) -> bool:
    return bool(re.fullmatch(DATASET_NAME, value)) and value not in RESERVED_DATASET_NAMES
