"""The second baseline: a bare function that imports the Firestore client and reads one document."""

from google.cloud import firestore

_client = None


def handle(request):
    global _client
    if _client is None:
        _client = firestore.Client()
    _client.collection("users").document("owner@example.com").get()
    return "read"
