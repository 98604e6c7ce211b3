"""gunicorn configuration for production (Dockerfile, compose.yaml) and the benchmark.

    gunicorn -c brikk/gunicorn.conf.py brikk.wsgi

Prometheus multiprocess mode: every worker writes its metrics to files in
PROMETHEUS_MULTIPROC_DIR and /metrics sums them. prometheus_client chooses where values go once,
when it is first imported, and workers are forked from this master: so the directory is set here,
before anything imports prometheus_client (this module imports it only inside ``child_exit``),
and emptied at start so that counters of a previous run do not linger; ``child_exit`` marks a
dead worker's live gauges. brikk/settings.py refuses to start a process in which the variable was
set after the import.
"""

import glob
import os
import tempfile
import time

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="brikk-prometheus-")

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")  # noqa: S104 - a container listens on all interfaces
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Threaded workers: an echo spends much of its time waiting on PostgreSQL and Redis, and a thread
# keeps a keep-alive connection without holding a whole process. Measured on 2 cores (make bench):
# gthread serves about 35% more echoes and bare requests than 4 sync workers. 3 threads rather than 4:
# as many batch messages per second (6,787 and 7,101 against 6,766 and 7,120), 96 MiB per worker instead
# of 99-103 (each thread holds a batch's memory while it works), about 10% fewer echoes per second.
# Raise GUNICORN_WORKERS with the cores (about one per core).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "3"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = None  # requests are measured by /metrics and logged by the application as JSON
errorlog = "-"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - gunicorn's heartbeat files
wsgi_app = "brikk.wsgi:application"
# The application is loaded once in the master and the workers are forked from it: their code and the objects made
# at import are shared pages, not a copy each (see ``when_ready``). GUNICORN_PRELOAD=false loads it per worker.
preload_app = os.environ.get("GUNICORN_PRELOAD", "true").lower() in ("1", "true", "yes", "on")


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)


def when_ready(server):
    """Before the first fork: import what every first request would (the URLconf and every view), then move all
    objects out of the garbage collector's reach (``gc.freeze``), so that collections in the workers do not write to
    the shared pages and copy them (Instagram's recipe)."""
    if not preload_app:
        return
    import gc

    from django.db import connections
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports the URLconf and the views
    connections.close_all()  # nothing should be open here; a socket shared by forked workers would be a disaster
    gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess  # after PROMETHEUS_MULTIPROC_DIR is set (above)

    multiprocess.mark_process_dead(worker.pid)


def _libc_malloc_trim():
    """glibc's malloc_trim, or None where the C library is not glibc (Alpine's musl)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _libc_malloc_trim()
# A request or an answer past this size (a batch send: about 35 KiB per 100 envelopes; a receive of 100 messages, about
# 100 KiB) leaves megabytes of freed memory in the C allocator's arenas; it is handed back to the system, at most once
# a second: trimming after every batch cost a fifth of the batch send's throughput (the next batch faults the pages in
# again), measured with make bench.
LARGE_BODY_BYTES = int(os.environ.get("GUNICORN_TRIM_AFTER_BYTES", "16384"))
TRIM_INTERVAL_SECONDS = 1.0
_last_trim = 0.0


def post_request(worker, req, wsgi_environ, resp):
    global _last_trim
    size = max(int(wsgi_environ.get("CONTENT_LENGTH") or 0), getattr(resp, "sent", 0) or 0)
    if _malloc_trim is None or size <= LARGE_BODY_BYTES:
        return
    now = time.monotonic()
    if now - _last_trim >= TRIM_INTERVAL_SECONDS:
        _last_trim = now  # threads of one worker may race here: at worst two trims
        _malloc_trim(0)
