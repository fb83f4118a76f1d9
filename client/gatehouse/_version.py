# Released with the server under the same number (common/version.py; tests/integration/test_version.py
# keeps the two and CHANGELOG.md in step).
__version__ = "0.1.0"
