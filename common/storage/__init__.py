"""The backends: Firestore (store), Cloud Storage (blobs), Pub/Sub (pubsub); how long a request
may wait on them (deadlines), the clients built to honour that (clients), the one place
their failures become answers (failures), and background work kept in Firestore (jobs)."""
