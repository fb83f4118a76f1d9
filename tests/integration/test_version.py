"""The version as a running function reports it (the sources that name it: tests/unit/test_version.py)."""

from __future__ import annotations

import re

from common.version import VERSION


def test_health_and_openapi_report_it_with_the_build_label(api):
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    assert api.get("/roles/_health").get_json()["version"] == f"{VERSION}+test"
    assert api.get("/roles/_openapi.json").get_json()["info"]["version"] == f"{VERSION}+test"
