"""Gatehouse's shared layer: HTTP plumbing, auth, authorization, storage and audit."""
