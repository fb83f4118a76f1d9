def schema(context):
    """The warehouse's tables and how to query them (public: no data, no approval needed)."""
    return {
        "tables": {"cells": [{"name": name, "type": kind} for name, kind in context.code.columns()]},
        "query": 'POST /twins/warehouse.query {"sql": "SELECT ...", "limit": 1-1000}',
    }
