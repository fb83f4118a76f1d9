"""The Firestore collections of the functions' own layouts that another function must reach: the
dataset purge (functions/datasets/purge.py) deletes a dataset's things in each of them, and no
function imports another, so their names are written once here, for the owners and the purge.

A collection that common/ owns is named by its module (datasets.COLLECTION, authz.USERS,
apikeys.COLLECTION, audit.COLLECTION); one that a single function alone reads is named in it.
"""

from __future__ import annotations

# annotations: annotations/{data key}/v1_annotations|v2_annotations/{user|key}
ANNOTATIONS = "annotations"
V1_ANNOTATIONS = "v1_annotations"
V2_ANNOTATIONS = "v2_annotations"

# savedsearches: savedsearches/{data key}/searches/{user|key}
SAVED_SEARCHES = "savedsearches"
SEARCHES = "searches"

# atlas: atlas/{entry id}, each naming its dataset
ATLAS = "atlas"

# transfer: transfer_jobs/{job}/transfer_parts/{key}
TRANSFER_JOBS = "transfer_jobs"
TRANSFER_PARTS = "transfer_parts"

# twins: twins/{path} (endpoints), twin_state/{side's generation}/keys/{key}, twin_calls/{id},
# twin_jobs/{id}, twin_requests/{id} (approval requests: the collection keeps the HTTP paths' name)
TWINS = "twins"
TWIN_STATE = "twin_state"
TWIN_STATE_KEYS = "keys"
TWIN_CALLS = "twin_calls"
TWIN_JOBS = "twin_jobs"
TWIN_REQUESTS = "twin_requests"
