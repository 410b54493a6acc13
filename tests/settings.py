"""Test settings: the project's settings under the testing profile (NUKEWORKS_ENV=testing, in the
process environment, so it beats .env and instance/environment; its profile lets the test
client's "testserver" in), with every machine-local path in a temporary folder and nothing
registered at start-up (tests make their own databases)."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="nukeworks-tests-")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789")
# A live server started by a test (tests/live.py) passes its own folders.
_LIVE = os.environ.get("NUKEWORKS_LIVE_SERVER") == "1"
for _name, _value in {
    "NUKEWORKS_INSTANCE_DIR": os.path.join(_TMP, "instance"),
    "NUKEWORKS_DATABASES_DIR": os.path.join(_TMP, "databases"),
    "NUKEWORKS_DEFAULT_DB": os.path.join(_TMP, "default.sqlite"),
    "SESSION_FILE_PATH": os.path.join(_TMP, "sessions"),
}.items():
    if not _LIVE:
        os.environ[_name] = _value
os.environ["NUKEWORKS_ENV"] = "testing"

from nukeworks.settings import *  # noqa: E402,F403
from nukeworks.settings import DBSELECT  # noqa: E402

TEST_TMP_DIR = _TMP
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DBSELECT = {**DBSELECT, "REGISTER_SCANNED_AT_STARTUP": False}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
STATIC_ROOT = os.path.join(_TMP, "staticfiles")
os.makedirs(STATIC_ROOT, exist_ok=True)
