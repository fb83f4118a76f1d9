"""Gatehouse's shared layer: only what two or more functions (or tools) use; a module only one
function uses lives in its folder, functions/<name>/ (tests/unit/test_imports.py checks both).

In layers, lowest first; a module imports only from its own layer or lower ones
(tests/unit/test_layers.py), and nothing makes an import cycle:
- the kernel, at this package's top: config (settings), errors (the error envelope's
  exceptions), logs, version, jsonio, models (pydantic bases and shared fields), cache (the
  one kind of per-instance cache);
- storage/: store (Firestore), blobs (Cloud Storage), pubsub (Pub/Sub), deadlines (how long a
  request may wait on them), clients (the clients built to keep to it), failures (backend
  failures as answers), jobs (background work: claim with a lease, finish, settle),
  datasets (the dataset catalog: records, generations, data keys and
  EXPOSE; here, below identity, because authz checks roles against its records), collections
  (the functions' Firestore collections that the dataset purge reaches too, named once);
- web/: http (routing and the request pipeline), workers (Pub/Sub deliveries), openapi, docs;
  identity/: auth, apikeys, authz (web never imports identity);
- catalog/: locations, sigindex; and audit (this package's top).
"""
