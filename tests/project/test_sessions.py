"""Session state lives in Redis when REDIS_URL is set (cached_db: read from Redis, written through to the
database), as the product specification asks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache

ROOT = Path(__file__).resolve().parents[2]


def session_engine(**env) -> str:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "BRIKK_"))}
    base.pop("REDIS_URL", None)
    base.update(DJANGO_DEBUG="true", DJANGO_SETTINGS_MODULE="brikk.settings", **env)
    code = "from django.conf import settings; print(settings.SESSION_ENGINE)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_with_redis_sessions_go_through_the_cache():
    assert session_engine(REDIS_URL="redis://127.0.0.1:6379/0") == "django.contrib.sessions.backends.cached_db"
    assert session_engine() == "django.contrib.sessions.backends.db"  # the embedded defaults: no Redis


@pytest.mark.pg_redis
@pytest.mark.django_db
def test_a_dashboard_login_puts_the_session_in_redis(client, owner, settings):
    from django_redis import get_redis_connection

    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    response = client.post("/login/", {"username": "owner", "password": "correct-horse-battery"})
    assert response.status_code == 302, response.content[:300]
    session_key = client.cookies["sessionid"].value
    redis_key = cache.make_key(f"django.contrib.sessions.cached_db{session_key}")
    assert get_redis_connection("default").exists(redis_key)
    assert Session.objects.filter(session_key=session_key).exists()  # written through: survives a Redis restart
    assert client.get("/").status_code == 200  # and it authenticates the next request
