"""Parse a Cloud Build config with gcloud's own loader (Cloud Build cannot run offline).

Run it with gcloud's bundled Python: `python -m tools.check_cloudbuild [cloudbuild.yaml]` finds
the SDK, re-runs itself under that interpreter with `<sdk>/lib` on the path, and exits 1 with
gcloud's message for an unknown field, an empty step, a bad substitution...
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sdk_root() -> str:
    from tools.emulators import gcloud_sdk_root

    return gcloud_sdk_root()


def check(path: str) -> subprocess.CompletedProcess:
    """gcloud's loader on `path`, under gcloud's Python; returncode 0 when it loads."""
    sdk = sdk_root()
    python = os.path.join(sdk, "platform", "bundledpythonunix", "bin", "python3")
    if not os.path.exists(python):
        python = sys.executable  # an SDK without a bundled Python uses the system's
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.path.join(sdk, "lib"), os.path.join(sdk, "lib", "third_party")]),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
    }
    return subprocess.run([python, "-c", _LOADER, path], env=env, capture_output=True, text=True, timeout=120)


_LOADER = """
import sys
from googlecloudsdk.api_lib.cloudbuild import cloudbuild_util, config
build = config.LoadCloudbuildConfigFromPath(sys.argv[1], cloudbuild_util.GetMessagesModule())
if not build.steps:
    sys.exit("no steps")
print(f"{sys.argv[1]}: {len(build.steps)} steps: " + ", ".join(s.id or s.name for s in build.steps))
"""


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    done = check(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "cloudbuild.yaml"))
    print(
        done.stdout.strip() if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]
    )
    sys.exit(done.returncode)
