"""What this deployment serves (SPEC §1 Exposure).

`EXPOSE` is a comma list of regular expressions over `dataset:<name>` and `twin:<path>`; a resource
that matches none is answered 404 to everyone (admins included) and left out of every list.
Unset, everything is served.
"""

from __future__ import annotations

from common.config import settings


def exposed(kind: str, name: str) -> bool:
    """True when `kind` ("dataset" or "twin") `name` is served by this deployment."""
    patterns = settings().expose
    if not patterns:
        return True
    subject = f"{kind}:{name}"
    return any(pattern.fullmatch(subject) for pattern in patterns)
