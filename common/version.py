"""The release: the one place the version is written (CHANGELOG.md names it, `_health` and the
OpenAPI documents report it, the Python client in client/ is released with the same number;
tests/integration/test_version.py keeps them in step)."""

import re

VERSION = "0.1.0"


def reported(build: str = "") -> str:
    """The version `_health` reports: the release, with a deployment's build label (GATEHOUSE_VERSION,
    e.g. Cloud Build's id) as semver build metadata: `0.1.0+<build>`."""
    build = re.sub(r"[^0-9A-Za-z.-]", "-", build).strip(".")  # semver's build metadata characters
    return f"{VERSION}+{build}" if build else VERSION
