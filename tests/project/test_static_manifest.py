"""Production with manifest static files (BRIKK_MANIFEST_STATIC) and no manifest does not start, rather
than answering 500 on every HTML page (brikk.health.require_static_files, run by brikk/wsgi.py and asgi.py)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_HTTPS": "false",
    "DJANGO_SECRET_KEY": "s" * 64,
    "BRIKK_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    "BRIKK_MANIFEST_STATIC": "true",
    "BRIKK_LOG_LEVEL": "WARNING",
}
NO_SERVICES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")


def server(tmp_path, static_root: Path) -> LiveServer:
    env = {
        **PRODUCTION,
        "BRIKK_STATIC_ROOT": str(static_root),
        "BRIKK_SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    return LiveServer(env, workers=1, log_path=tmp_path / "gunicorn.log", unset=NO_SERVICES)


def test_without_a_manifest_the_server_refuses_to_start(tmp_path):
    live = server(tmp_path, tmp_path / "never-collected")
    try:
        with pytest.raises(RuntimeError, match="gunicorn exited"):
            live.start(timeout=90)
    finally:
        live.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Static files: no static files manifest at" in log
    assert "run `manage.py collectstatic`" in log


def test_after_collectstatic_the_pages_link_hashed_files(tmp_path):
    static_root = tmp_path / "static"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "BRIKK_"))}
    env.update(PRODUCTION, BRIKK_STATIC_ROOT=str(static_root), BRIKK_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stderr
    live = server(tmp_path, static_root).start(timeout=90)
    try:
        page = live.get("/login/")
        assert page.status == 200, page.text[:500]
        stylesheet = re.search(r'href="(/static/css/dashboard\.[0-9a-f]{12}\.css)"', page.text).group(1)
        assert live.get(stylesheet).status == 200
    finally:
        live.stop()


@pytest.mark.django_db
def test_a_manifest_from_an_older_release_is_refused_too(tmp_path, settings):
    from django.core.exceptions import ImproperlyConfigured

    from brikk.health import require_static_files, static_files_problem

    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    assert "no static files manifest" in static_files_problem()
    (tmp_path / "staticfiles.json").write_text(
        json.dumps({"version": "1.1", "hash": "x", "paths": {"css/dashboard.css": "css/dashboard.0123456789ab.css"}})
    )
    problem = static_files_problem()
    assert "lacks" in problem and "run `manage.py collectstatic` again" in problem
    with pytest.raises(ImproperlyConfigured, match="Static files: the static files manifest"):
        require_static_files()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    assert static_files_problem() is None
