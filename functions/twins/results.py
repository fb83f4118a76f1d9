"""Results of twin jobs and request runs, kept where they fit: in their Firestore document when
small, in Cloud Storage (TWIN_RESULTS_BUCKET) when larger than a document may hold (1 MiB).
In the document a result is JSON text: Firestore cannot hold every JSON value (an array in an
array, for one, which query results are full of)."""

from __future__ import annotations

import json
from typing import Any

from common import jsonio
from common.config import settings
from common.storage import blobs

INLINE_LIMIT = 512 << 10  # JSON bytes kept in the document; the rest of it has room for the other fields


def stored(kind: str, key: str, result: Any) -> dict[str, Any]:
    """The fields that hold `result` in its document: `{"result_json": text}`, or
    `{"result_blob": name}` after writing it to Cloud Storage."""
    text = jsonio.dumps(result)
    if len(text.encode()) <= INLINE_LIMIT:
        return {"result_json": text}
    name = f"{kind}/{key}.json"
    blobs.bucket(settings().twin_results_bucket).blob(name).upload_from_string(
        text, content_type="application/json"
    )
    return {"result_blob": name}


def loaded(doc: dict[str, Any]) -> Any:
    """The result a document holds (read back from Cloud Storage when it was written there)."""
    if "result_json" in doc:
        return json.loads(doc["result_json"])
    if "result_blob" not in doc:
        return doc.get("result")
    return json.loads(
        blobs.bucket(settings().twin_results_bucket).blob(doc["result_blob"]).download_as_bytes()
    )
