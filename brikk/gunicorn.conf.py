"""gunicorn configuration for production (Dockerfile, compose.yaml) and the benchmark.

    gunicorn -c brikk/gunicorn.conf.py brikk.wsgi

Prometheus multiprocess mode: every worker writes its metrics to files in
PROMETHEUS_MULTIPROC_DIR and /metrics sums them. The directory must be set before any worker
imports prometheus_client, so it is prepared here, in the master, and emptied at start so that
counters of a previous run do not linger; ``child_exit`` marks a dead worker's live gauges.
"""

import glob
import os
import tempfile

from prometheus_client import multiprocess

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")  # noqa: S104 - a container listens on all interfaces
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Threaded workers: an echo spends much of its time waiting on PostgreSQL and Redis, and a thread
# keeps a keep-alive connection without holding a whole process. Measured on 2 cores (make bench):
# gthread 2x4 serves about 35% more echoes and bare requests than 4 sync workers; 2x2 or 3x2 are
# no better than 2x4. Raise GUNICORN_WORKERS with the cores (about one per core).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = None  # requests are measured by /metrics and logged by the application as JSON
errorlog = "-"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - gunicorn's heartbeat files
wsgi_app = "brikk.wsgi:application"

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="brikk-prometheus-")


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
