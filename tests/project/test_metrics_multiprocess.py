"""Request metrics survive however the server is started: PROMETHEUS_MULTIPROC_DIR is in place before
prometheus_client is imported, or the process refuses to start (brikk/gunicorn.conf.py, brikk/settings.py)."""

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_HTTPS": "false",
    "DJANGO_SECRET_KEY": "s" * 64,
    "BRIKK_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    "BRIKK_MANIFEST_STATIC": "false",
    "BRIKK_LOG_LEVEL": "WARNING",
}


def healthz_count(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "django_http_responses_total_by_status_view_method_total"
        and sample.labels.get("view") == "healthz"
        and sample.labels.get("status") == "200"
    )


def test_gunicorn_started_without_a_multiproc_dir_still_reports_request_metrics(tmp_path):
    """No Docker, no PROMETHEUS_MULTIPROC_DIR in the environment: the config sets it in time for the workers."""
    server = LiveServer(
        {**PRODUCTION, "BRIKK_SQLITE_PATH": str(tmp_path / "db.sqlite3")},
        workers=2,
        log_path=tmp_path / "gunicorn.log",
        unset=("PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"),
    ).start(timeout=90)  # a busy 2-core machine can take a while to boot two workers
    try:
        before = healthz_count(server.get("/metrics").text)
        for _ in range(5):
            assert server.get("/healthz").status == 200
        scrape = server.get("/metrics")
        log = (tmp_path / "gunicorn.log").read_text()[-3000:]
        assert scrape.status == 200, scrape.text + log
        assert healthz_count(scrape.text) - before == 5, scrape.text[:2000] + log
    finally:
        server.stop()


def _python(code: str, tmp_path, **env):
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "BRIKK_", "PROMETHEUS"))}
    base.pop("DATABASE_URL", None)
    base.pop("REDIS_URL", None)
    base.update(PRODUCTION, BRIKK_SQLITE_PATH=str(tmp_path / "db.sqlite3"), DJANGO_SETTINGS_MODULE="brikk.settings")
    base.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60)


def test_a_multiproc_dir_set_after_prometheus_client_was_imported_stops_the_start(tmp_path):
    late = _python(
        "import os, prometheus_client, django\n"
        f"os.environ['PROMETHEUS_MULTIPROC_DIR'] = {str(tmp_path / 'late')!r}\n"
        "django.setup()\n",
        tmp_path,
    )
    assert late.returncode != 0
    assert "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported" in late.stderr


def test_a_multiproc_dir_from_the_environment_is_created_and_used(tmp_path):
    directory = tmp_path / "not" / "there" / "yet"
    started = _python(
        "import django\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "Client(HTTP_HOST='localhost').get('/healthz')\n"
        "from brikk import metrics\n"
        "assert metrics.multiprocess_mode()\n"
        "print(metrics.exposition().decode())\n",
        tmp_path,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    assert started.returncode == 0, started.stderr
    assert directory.is_dir() and list(directory.glob("*.db"))
    assert healthz_count(started.stdout) == 1
