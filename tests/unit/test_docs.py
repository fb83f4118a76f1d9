"""The README points at the API contract kept in the repository (docs/api.md); the contract
against the served routes: tests/integration/test_docs.py."""

from __future__ import annotations

import os

from tests.conftest import ROOT


def test_the_readme_points_at_the_contract_in_the_repository():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "docs/api.md" in readme
    assert "../shared" not in readme
