"""The backends: Firestore (store), Cloud Storage (blobs), Pub/Sub (pubsub); how long a request
may wait on them (deadlines), the clients built to honour that (clients), the one place
their failures become answers (failures), background work kept in Firestore (jobs); the
dataset catalog over them (datasets), which identity's role checks read, and the names of the
functions' collections (collections)."""
