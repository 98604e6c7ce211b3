"""Debian's nginx with deploy/nginx.conf in front of a real gunicorn (brikk/gunicorn.conf.py), both on
127.0.0.1 with free ports: slow clients cannot stall the server, and what the proxy forwards is trusted
only as far as it should be.

The attack: connections that announce a body (Content-Length: 1000), send one byte and wait. Straight
at gunicorn, 20 of them take every worker thread and /healthz stops answering; through nginx, which
reads bodies completely before it passes a request on, they cost gunicorn nothing. Every wait is bounded
(socket timeouts of 2-5 s; nginx drops a stalled body after client_body_timeout).
"""

import http.client
import json
import socket
import time
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection

from agents import services as agent_services
from audit.models import AuditLog
from tests.support.coordination import ECHO_PATH, encode, envelope, signed_headers
from tests.support.live import meta_to_http
from tests.support.live_server import LiveServer
from tests.support.nginx import Nginx, nginx_binary

STALLED = 20
# On top of the test run's environment (its DJANGO_SECRET_KEY and BRIKK_ENCRYPTION_KEYS decrypt the signing
# secrets this process stores).
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_HTTPS": "false",
    "BRIKK_MANIFEST_STATIC": "false",  # no collectstatic in tests
    "BRIKK_LOG_LEVEL": "WARNING",
    "DJANGO_BEHIND_PROXY": "true",
    "BRIKK_METRICS_TOKEN": "scrape-token-0123456789",
}


@pytest.fixture(autouse=True)
def needs_nginx():
    if nginx_binary() is None:
        pytest.fail("nginx is missing: `make nginx` (run by `make test`) installs Debian's package")


def stall(port: int, count: int = STALLED) -> list[socket.socket]:
    """``count`` connections that announce a 1000-byte body, send one byte and wait: half a login form
    (Django reads it for the CSRF check), half a POST to /healthz (gunicorn drains it for keep-alive)."""
    held = []
    for index in range(count):
        path, content_type = (b"/login/", b"application/x-www-form-urlencoded") if index % 2 else (b"/healthz", b"a/b")
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(
            b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + content_type + b"\r\n"
            b"Content-Length: 1000\r\n\r\nx"
        )
        held.append(sock)
    time.sleep(0.5)  # let the server take them up
    return held


def release(held: list[socket.socket]) -> None:
    for sock in held:
        sock.close()


def timed(port: int, method: str, path: str, *, body: bytes | None = None, headers=None, timeout: float = 5):
    """(status, lower-cased headers, body bytes, seconds); status is None when nothing came back in time."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        content = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, content, time.perf_counter() - started
    except TimeoutError:
        return None, {}, b"", time.perf_counter() - started
    finally:
        conn.close()


def signed_echo(port, sender, recipient, **extra_headers):
    raw = encode(envelope(sender.agent, recipient.agent))
    headers = {
        "Content-Type": "application/json",
        **meta_to_http(signed_headers(sender.key.plaintext, sender.signing_secret, raw)),
        **extra_headers,
    }
    return timed(port, "POST", ECHO_PATH, body=raw, headers=headers)


@pytest.mark.pg_redis
@pytest.mark.django_db(transaction=True)
def test_twenty_stalled_bodies_do_not_delay_healthz_or_a_signed_echo_behind_nginx(tmp_path, new_agent, org, owner):
    peer = agent_services.create_agent(org, name="beta", owner=owner)
    redis = urlparse(settings.REDIS_URL)
    db = settings.DATABASES["default"]
    gunicorn = LiveServer(
        {
            **PRODUCTION,
            "DATABASE_URL": f"postgres://postgres@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
            f"{connection.settings_dict['NAME']}",
            "REDIS_URL": f"redis://{redis.hostname}:{redis.port or 6379}{redis.path or '/0'}",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "BRIKK_HMAC_REQUIRED": "true",
        },
        # brikk/gunicorn.conf.py (gthread, 3 threads) with one worker: which worker accepts a connection is up to
        # the kernel, so with two the control below could find one worker with a free thread by chance.
        workers=1,
        log_path=tmp_path / "gunicorn.log",
    ).start(timeout=90)
    proxy = Nginx(
        f"127.0.0.1:{gunicorn.port}", max_body_bytes=settings.BRIKK_MAX_BODY_BYTES, log_path=tmp_path / "nginx.log"
    )
    held = []
    try:
        proxy.start()
        status, _, body, _ = signed_echo(proxy.port, new_agent, peer)  # warm: key verified and cached
        assert status == 200, body
        timings = {}

        # Without the proxy the attack works: every gunicorn thread waits for a body.
        held = stall(gunicorn.port)
        status, _, _, timings["healthz direct, stalled"] = timed(gunicorn.port, "GET", "/healthz", timeout=2)
        assert status is None, "gunicorn answered while its threads were held: the attack did not take"
        release(held)
        recovered = gunicorn.wait_for(lambda: timed(gunicorn.port, "GET", "/healthz")[0] == 200, timeout=30)
        assert recovered, "gunicorn did not recover once the stalled clients left"

        # Through nginx the same clients hold only nginx connections.
        held = stall(proxy.port)
        status, _, _, timings["healthz via nginx, stalled"] = timed(proxy.port, "GET", "/healthz")
        assert status == 200
        status, headers, body, timings["signed echo via nginx, stalled"] = signed_echo(
            proxy.port, new_agent, peer, **{"X-Forwarded-For": "203.0.113.66"}
        )
        assert status == 200, body
        assert json.loads(body)["status"] == "delivered"
        print(f"\n{STALLED} stalled bodies: " + ", ".join(f"{name} {value:.3f} s" for name, value in timings.items()))
        print("(healthz direct: no answer at all before the client gave up)")
        assert timings["healthz via nginx, stalled"] < 1.0, timings
        assert timings["signed echo via nginx, stalled"] < 2.0, timings

        # A client cannot choose the address the server records: nginx overwrites X-Forwarded-For.
        audit = AuditLog.objects.get(action="echo.delivered", correlation_id=headers["x-request-id"])
        assert audit.client_ip == "127.0.0.1"
    finally:
        release(held)
        proxy.stop()
        gunicorn.stop()


@pytest.fixture
def stack(tmp_path):
    """gunicorn on a throwaway SQLite file (no request here touches the database) behind nginx."""
    gunicorn = LiveServer(
        {
            **PRODUCTION,
            "BRIKK_SQLITE_PATH": str(tmp_path / "db.sqlite3"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        },
        workers=1,
        log_path=tmp_path / "gunicorn.log",
        unset=("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"),
    ).start(timeout=90)
    proxy = Nginx(
        f"127.0.0.1:{gunicorn.port}", max_body_bytes=settings.BRIKK_MAX_BODY_BYTES, log_path=tmp_path / "nginx.log"
    )
    try:
        yield gunicorn, proxy.start()
    finally:
        proxy.stop()
        gunicorn.stop()


def test_behind_nginx_stalled_bodies_refusals_and_metrics(stack):
    gunicorn, proxy = stack

    # One worker with four threads: twenty stalled bodies would silence it; behind nginx they do not.
    held = stall(proxy.port)
    try:
        for path in ("/healthz", "/api/v1/coordination/health"):
            status, _, _, seconds = timed(proxy.port, "GET", path)
            assert status == 200 and seconds < 1.0, (path, status, seconds)
    finally:
        release(held)

    # /metrics: every visitor comes through a loopback proxy, so only the token opens it.
    assert timed(proxy.port, "GET", "/metrics")[0] == 403
    assert timed(gunicorn.port, "GET", "/metrics")[0] == 403  # DJANGO_BEHIND_PROXY: loopback proves nothing
    token = {"Authorization": f"Bearer {PRODUCTION['BRIKK_METRICS_TOKEN']}"}
    assert timed(proxy.port, "GET", "/metrics", headers=token)[0] == 200

    # nginx refuses a body over BRIKK_MAX_BODY_BYTES itself, in the API's error shape.
    too_large = b"x" * (settings.BRIKK_MAX_BODY_BYTES + 1)
    status, headers, body, _ = timed(
        proxy.port,
        "POST",
        ECHO_PATH,
        body=too_large,
        headers={"Content-Type": "application/json", "X-Request-ID": "too-large-000001"},
    )
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "code": "payload_too_large",
        "message": "The request body is too large.",
        "request_id": "too-large-000001",
        "details": None,
    }

    # gunicorn gone: a JSON 503 with Retry-After, like every 503 of the API.
    gunicorn.stop()
    status, headers, body, _ = timed(proxy.port, "GET", "/api/v1/coordination/health")
    assert status == 503
    assert headers["retry-after"] == "5"
    assert json.loads(body)["code"] == "service_unavailable"
    assert json.loads(body)["request_id"] == headers["x-request-id"]
