"""Invalid configuration is refused at start, naming the variable; a misconfigured instance never serves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "s" * 64
GOOD_FERNET = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="


def start(**env):
    """Run `manage.py check` with exactly this configuration; returns (exit code, stderr)."""
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "BRIKK_"))}
    base.pop("DATABASE_URL", None)
    base.pop("REDIS_URL", None)
    base.update(env)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )
    return result.returncode, result.stderr


def production(**env):
    return {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": GOOD_SECRET, "BRIKK_ENCRYPTION_KEYS": GOOD_FERNET, **env}


def test_good_production_configuration_starts():
    code, stderr = start(**production())
    assert code == 0, stderr


def test_development_defaults_start():
    code, stderr = start(DJANGO_DEBUG="true")
    assert code == 0, stderr


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DJANGO_DEBUG": "false"}, "DJANGO_SECRET_KEY is required"),
        (production(DJANGO_SECRET_KEY="short"), "DJANGO_SECRET_KEY must be at least 50"),
        (production(BRIKK_ENCRYPTION_KEYS=""), "BRIKK_ENCRYPTION_KEYS is required"),
        (production(BRIKK_ENCRYPTION_KEYS="not-a-key"), "BRIKK_ENCRYPTION_KEYS holds a value that is not a Fernet key"),
        (production(DJANGO_DEBUG="maybe"), "DJANGO_DEBUG='maybe' is not a valid flag value"),
        (production(BRIKK_HMAC_REQUIRED="sometimes"), "BRIKK_HMAC_REQUIRED='sometimes' is not a valid flag value"),
        (production(BRIKK_RATE_LIMIT_ENABLED="2"), "BRIKK_RATE_LIMIT_ENABLED='2' is not a valid flag value"),
        (production(BRIKK_IDEMPOTENCY_ENABLED="nah"), "BRIKK_IDEMPOTENCY_ENABLED='nah' is not a valid flag value"),
        (production(DATABASE_URL="mysql://db/x"), "DATABASE_URL has scheme 'mysql'"),
        (production(DATABASE_URL="postgres://"), "DATABASE_URL has no host name"),
        (production(DATABASE_URL="postgres://host:notaport/db"), "DATABASE_URL is not a valid URL"),
        (production(REDIS_URL="http://cache:6379"), "REDIS_URL has scheme 'http'"),
        (production(BRIKK_MAX_BODY_BYTES="lots"), "BRIKK_MAX_BODY_BYTES='lots' is not an integer"),
        (production(BRIKK_MAX_BODY_BYTES="10"), "BRIKK_MAX_BODY_BYTES=10 is below the minimum"),
        (production(BRIKK_LOG_FORMAT="xml"), "BRIKK_LOG_FORMAT='xml' is not one of"),
    ],
)
def test_invalid_configuration_refuses_to_start(env, names):
    code, stderr = start(**env)
    assert code != 0
    assert "Configuration error" in stderr
    assert names in stderr
    assert "Traceback" not in stderr


def test_wsgi_application_refuses_to_load_when_misconfigured():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "BRIKK_"))}
    env.update(DJANGO_DEBUG="false")
    result = subprocess.run(
        [sys.executable, "-c", "import brikk.wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr
