"""Gatehouse's shared layer: HTTP plumbing, auth, authorization, storage and audit; only what two
or more functions (or tools) use. A module only one function uses lives in its folder,
functions/<name>/ (tests/test_imports.py checks both)."""
