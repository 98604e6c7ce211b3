"""Deployment files read against the settings (no Docker engine here), and `check --deploy`."""

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml
from cryptography.fernet import Fernet
from django.urls import resolve

BASE_DIR = Path(__file__).resolve().parents[2]
# Read by libraries or the process rather than by brikk/settings.py.
RUNTIME_VARIABLES = {
    "PROMETHEUS_MULTIPROC_DIR",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}


def variables_read_by_the_project() -> set[str]:
    settings_source = (BASE_DIR / "brikk" / "settings.py").read_text()
    names = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', settings_source))
    gunicorn_source = (BASE_DIR / "brikk" / "gunicorn.conf.py").read_text()
    names |= set(re.findall(r'os\.environ(?:\.get\(|\[)\s*"([A-Z0-9_]+)"', gunicorn_source))
    return names


def compose():
    return yaml.safe_load((BASE_DIR / "compose.yaml").read_text())


def test_every_variable_compose_sets_for_brikk_is_read_by_the_settings():
    known = variables_read_by_the_project() | RUNTIME_VARIABLES
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "BRIKK_METRICS_TOKEN", "GUNICORN_WORKERS"} <= known
    services = compose()["services"]
    assert {"proxy", "web", "worker", "beat", "postgres", "redis"} <= set(services)
    for name in ("web", "worker", "beat", "dispatcher"):
        environment = services[name]["environment"]
        unknown = sorted(set(environment) - known)
        assert unknown == [], f"{name} sets variables nothing reads: {unknown}"
        assert (
            environment["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in environment["DATABASE_URL"]
        )
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_service_that_serves_has_a_healthcheck_and_commands_point_at_real_things():
    services = compose()["services"]
    for name in ("web", "worker", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert resolve("/healthz").url_name == "healthz"
    assert services["worker"]["command"][:3] == ["celery", "-A", "brikk"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "brikk", "beat"]
    # The push dispatcher is the management command that exists (coordination/management/commands/).
    dispatcher = services["dispatcher"]["command"]
    assert dispatcher[:2] == ["python", "manage.py"]
    assert (BASE_DIR / "coordination" / "management" / "commands" / f"{dispatcher[2]}.py").is_file()
    # The sealer runs in the worker and appends checkpoints to a file on the persistent volume.
    checkpoint = services["worker"]["environment"]["BRIKK_AUDIT_CHECKPOINT_FILE"]
    assert any(checkpoint.startswith(volume.split(":")[1]) for volume in services["worker"]["volumes"])


def test_only_the_buffering_proxy_is_published_and_it_forwards_to_web():
    """Slow clients must meet nginx (deploy/nginx.conf), never gunicorn (README, "Behind the reverse proxy")."""
    from tests.support.nginx import PLACEHOLDERS, TEMPLATE

    services = compose()["services"]
    proxy, web = services["proxy"], services["web"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}, published
    assert [port.split(":")[-1] for port in proxy["ports"]] == [proxy["environment"]["BRIKK_NGINX_LISTEN"]]
    assert web["expose"] == ["8000"]
    assert proxy["environment"]["BRIKK_UPSTREAM"] == "web:8000"
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    # The inbox's waiting consumers go to the ASGI server, which is not published either.
    events = services["events"]
    assert proxy["environment"]["BRIKK_EVENTS_UPSTREAM"] == "events:8001" and events["expose"] == ["8001"]
    assert events["command"][:2] == ["uvicorn", "brikk.asgi:application"] and "8001" in events["command"]
    assert proxy["depends_on"]["events"]["condition"] == "service_healthy"
    # The proxy refuses bodies over the server's own limit, and the server trusts what the proxy forwards.
    assert proxy["environment"]["BRIKK_MAX_BODY_BYTES"] == web["environment"]["BRIKK_MAX_BODY_BYTES"]
    assert events["environment"]["BRIKK_MAX_BODY_BYTES"] == web["environment"]["BRIKK_MAX_BODY_BYTES"]
    assert web["environment"]["DJANGO_BEHIND_PROXY"] == "${DJANGO_BEHIND_PROXY:-true}"
    assert proxy["build"]["dockerfile"] == "deploy/nginx.Dockerfile"

    template = TEMPLATE.read_text()
    assert set(re.findall(r"\$\{(BRIKK_[A-Z_]+)\}", template)) == set(PLACEHOLDERS)
    for directive in (
        "proxy_request_buffering on;",
        "client_body_timeout 10s;",
        "client_max_body_size ${BRIKK_MAX_BODY_BYTES};",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "location /api/v1/inbox/ {",
        "proxy_pass http://brikk_events;",
    ):
        assert directive in template, directive
    image = (BASE_DIR / "deploy" / "nginx.Dockerfile").read_text()
    assert "FROM debian:" in image and "apt-get install -y --no-install-recommends nginx" in image
    assert "envsubst '" + " ".join(f"${{{name}}}" for name in PLACEHOLDERS) + "'" in image
    assert set(re.findall(r"\b(BRIKK_[A-Z_]+)=", image)) == set(PLACEHOLDERS)  # a default for each


def test_dockerfile_uses_the_gunicorn_config_and_a_non_root_user():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
    assert "collectstatic --no-input" in dockerfile
    assert re.search(r"^USER brikk$", dockerfile, re.M)
    assert 'CMD ["gunicorn", "-c", "brikk/gunicorn.conf.py"' in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert (BASE_DIR / "brikk" / "gunicorn.conf.py").exists()
    env_names = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+)=", dockerfile, re.M)) | set(
        re.findall(r"^ENV ([A-Z][A-Z0-9_]+)=", dockerfile, re.M)
    )
    unknown = env_names - variables_read_by_the_project() - RUNTIME_VARIABLES
    assert unknown == set(), unknown
    # The throwaway key used for collectstatic is a valid Fernet key (settings refuse anything else).
    throwaway = re.search(r"BRIKK_ENCRYPTION_KEYS=(\S+)", dockerfile).group(1)
    Fernet(throwaway)


def test_check_deploy_with_production_settings_reports_nothing(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "BRIKK_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="brikk.settings",
        DJANGO_DEBUG="false",
        DJANGO_HTTPS="true",
        DJANGO_SECRET_KEY="a-production-like-secret-" + "k3y" * 20,
        DJANGO_ALLOWED_HOSTS="brikk.example.com",
        BRIKK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        BRIKK_SQLITE_PATH=str(tmp_path / "check.sqlite3"),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_gunicorn_hands_memory_back_after_large_requests_at_most_once_a_second(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else loading the config sets it for good
    spec = importlib.util.spec_from_file_location("gunicorn_conf", BASE_DIR / "brikk" / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert conf._malloc_trim is not None  # glibc here
    trims = []
    monkeypatch.setattr(conf, "_malloc_trim", trims.append)
    clock = iter([100.0, 100.5, 101.2])
    monkeypatch.setattr(conf, "time", SimpleNamespace(monotonic=lambda: next(clock)))  # this module's clock only
    small, large = {"CONTENT_LENGTH": "900"}, {"CONTENT_LENGTH": str(conf.LARGE_BODY_BYTES + 1)}
    short_answer, long_answer = SimpleNamespace(sent=700), SimpleNamespace(sent=conf.LARGE_BODY_BYTES + 1)
    conf.post_request(None, None, small, short_answer)
    conf.post_request(None, None, {}, short_answer)
    assert trims == []  # small requests with small answers never trim (and read no clock)
    conf.post_request(None, None, large, short_answer)  # 100.0: a large request body
    conf.post_request(None, None, large, short_answer)  # 100.5: within the second
    conf.post_request(None, None, {}, long_answer)  # 101.2: a large answer (a receive of many messages)
    assert trims == [0, 0]
