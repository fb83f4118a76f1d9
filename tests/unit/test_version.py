"""One version: common/version.py is the source; CHANGELOG.md's latest release, `_health`, the
OpenAPI documents and the Python client (client/) all name it (`_health` and the documents:
tests/integration/test_version.py)."""

from __future__ import annotations

import os
import re

from common.version import VERSION, reported
from tests.conftest import ROOT


def test_the_changelog_names_the_version_as_its_latest_release():
    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", f.read(), re.M)
    assert releases and releases[0] == VERSION


def test_each_release_names_its_commit():
    """Tags may not travel with a copy of the repository: the changelog says which commit each
    release is."""
    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        text = f.read()
    releases = re.split(r"^## ", text, flags=re.M)[1:]
    for release in releases:
        if not release.startswith("[Unreleased]"):
            assert re.search(r"commit `[0-9a-f]{40}`", release), release.splitlines()[0]


def test_the_client_is_released_with_the_same_number():
    with open(os.path.join(ROOT, "client", "gatehouse", "_version.py")) as f:
        assert re.search(r'^__version__ = "(.+)"$', f.read(), re.M).group(1) == VERSION


def test_build_labels_are_semver_build_metadata():
    assert reported("") == VERSION
    assert reported("b7f3-41") == f"{VERSION}+b7f3-41"
    assert reported("feature/x y") == f"{VERSION}+feature-x-y"


def test_the_readme_names_the_licence():
    with open(os.path.join(ROOT, "LICENSE")) as f:
        assert "Apache License" in f.read(500)
    with open(os.path.join(ROOT, "README.md")) as f:
        assert "Apache License 2.0" in f.read()
