"""``GET /metrics``: Prometheus text for the whole server, guarded by a token or an address allowlist.

Request counts and latency per route and status come from django-prometheus's middleware; the
product counters from each app's ``metrics`` module; Redis availability, the feature flags and the
inbox depth (coordination/metrics.py) are read at scrape time. Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes every
worker write its own files and the scrape sums them (brikk/gunicorn.conf.py sets it up and cleans up
after dead workers).
"""

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily

from brikk.lib.errors import ErrorCode, json_error_view
from coordination.metrics import InboxDepthCollector

FEATURE_FLAGS = {
    "hmac_required": "BRIKK_HMAC_REQUIRED",
    "rate_limit_enabled": "BRIKK_RATE_LIMIT_ENABLED",
    "rate_limit_fail_open": "BRIKK_RATE_LIMIT_FAIL_OPEN",
    "idempotency_enabled": "BRIKK_IDEMPOTENCY_ENABLED",
    "async_default": "BRIKK_ASYNC_DEFAULT",
}

_forbidden = json_error_view(
    403, ErrorCode.FORBIDDEN, "Metrics are available to the configured token or addresses only."
)


class LiveStateCollector:
    """Values that are true at scrape time rather than counted: Redis reachability and flags."""

    def collect(self):
        from brikk.health import redis_available

        redis = GaugeMetricFamily("brikk_redis_up", "1 if Redis answers a PING, 0 if not (absent when not configured).")
        available = redis_available()
        if available is not None:
            redis.add_metric([], 1.0 if available else 0.0)
        yield redis
        flags = GaugeMetricFamily("brikk_feature_flag", "Feature flags: 1 on, 0 off.", labels=["flag"])
        for label, setting in FEATURE_FLAGS.items():
            flags.add_metric([label], 1.0 if getattr(settings, setting) else 0.0)
        yield flags


def multiprocess_mode() -> bool:
    """Whether this process writes its values to PROMETHEUS_MULTIPROC_DIR: what prometheus_client chose
    when it was imported, not what the environment says now (brikk/settings.py makes the two agree)."""
    return values.ValueClass is not values.MutexValue


def exposition() -> bytes:
    """Counters and histograms (all workers' in multiprocess mode, else this process's), then live state read
    at scrape time by collectors in a registry of their own: in multiprocess mode the default registry is not
    what is scraped (the workers' files are), and a value true for the whole server must not be summed over
    workers. Each live collector runs once per scrape, in the worker that serves it."""
    if multiprocess_mode():
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    live = CollectorRegistry()
    live.register(LiveStateCollector())
    live.register(InboxDepthCollector())  # one database query per scrape
    return generate_latest(counted) + generate_latest(live)


def _bearer_token(request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _address_allowed(address: str | None) -> bool:
    if not address:
        return False
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
        client = client.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if settings.BEHIND_PROXY and client.is_loopback:
        # A proxy on the same host connects from loopback for every visitor: loopback proves nothing.
        return False
    return any(client in ipaddress.ip_network(net, strict=False) for net in settings.BRIKK_METRICS_ALLOWED_IPS)


def may_scrape(request) -> bool:
    """A matching bearer token (BRIKK_METRICS_TOKEN), or a client address in BRIKK_METRICS_ALLOWED_IPS.

    The address is the connection's (REMOTE_ADDR), never a forwarded header a client could forge.
    Behind the reverse proxy (DJANGO_BEHIND_PROXY) a loopback connection does not count: it may be
    the proxy relaying anyone.
    """
    expected = settings.BRIKK_METRICS_TOKEN
    presented = _bearer_token(request)
    if expected and presented and hmac.compare_digest(presented.encode(), expected.encode()):
        return True
    return _address_allowed(request.META.get("REMOTE_ADDR"))


def metrics(request):
    if not may_scrape(request):
        return _forbidden(request)
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
