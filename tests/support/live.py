"""Real HTTP requests against a live server, and a real Celery worker subprocess, for services tests."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def http_post(base_url: str, path: str, raw: bytes, headers: dict) -> tuple[int, dict, dict]:
    """One POST over a fresh connection: (status, lower-cased headers, JSON body)."""
    url = urlparse(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request("POST", path, body=raw, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(body or b"null")
    finally:
        connection.close()


def concurrently(count: int, call) -> list:
    """Run ``call(i)`` in ``count`` threads released together by a barrier; results in order."""
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def meta_to_http(meta: dict) -> dict:
    """Django test-client META names (HTTP_X_BRIKK_KEY) to HTTP header names (X-Brikk-Key)."""
    return {name[5:].replace("_", "-").title(): value for name, value in meta.items() if name.startswith("HTTP_")}


def database_url() -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class CeleryWorker:
    """``celery -A brikk worker`` on a private queue, on the test database, consuming from Redis."""

    def __init__(self, queue: str | None = None, **extra_env):
        self.queue = queue or f"test-{uuid.uuid4().hex[:12]}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "BRIKK_ASYNC_QUEUE": self.queue,
            "BRIKK_LOG_FORMAT": "text",
            **{name: str(value) for name, value in extra_env.items()},
        }
        self.process = None
        self.output: list[str] = []

    def start(self, timeout: float = 60) -> "CeleryWorker":
        command = [
            str(Path(sys.executable).with_name("celery")), "-A", "brikk", "worker", "--pool=solo", "-Q", self.queue,
            "-n", f"{self.queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
            self.output.append(line)
            if " ready." in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("celery worker did not start:\n" + "".join(self.output[-40:]))

    def _drain(self):
        for line in self.process.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(predicate, timeout: float = 30, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
