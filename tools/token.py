"""Print a dev token for an email, signed by the running local stack's issuer key (.dev/).

python -m tools.token someone@example.com      (or: make token EMAIL=someone@example.com)
"""

from __future__ import annotations

import os
import sys

from tools.devkeys import DEV_DIR


def main() -> int:
    if len(sys.argv) != 2 or "@" not in sys.argv[1]:
        print("usage: python -m tools.token EMAIL", file=sys.stderr)
        return 2
    key_file = os.path.join(DEV_DIR, "dev-issuer.pem")
    if not os.path.exists(key_file):
        print("no dev issuer key yet: run `make dev` first", file=sys.stderr)
        return 1
    from common.identity.auth import mint_dev_token

    with open(key_file, "rb") as f:
        print(mint_dev_token(sys.argv[1].strip().lower(), f.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
