"""A real gunicorn server (brikk/gunicorn.conf.py) in a subprocess, for tests that need several
worker processes or an outage of PostgreSQL/Redis while the server runs."""

import contextlib
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.processes import ManagedProcess

BASE_DIR = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Response:
    def __init__(self, status, headers, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode(errors="replace")


class LiveServer(ManagedProcess):
    name = "gunicorn"

    def __init__(self, env: dict, *, workers: int = 2, log_path: Path, unset: tuple[str, ...] = ()):
        super().__init__(log_path)
        self.port = free_port()
        self.env = {name: value for name, value in {**os.environ, **env}.items() if name not in unset}
        self.workers = workers

    def start(self, timeout: float = 30) -> "LiveServer":
        self.launch(
            [GUNICORN, "-c", "brikk/gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", str(self.workers)],
            ready=lambda: self.get("/healthz", timeout=1).status == 200,
            timeout=timeout,
            cwd=BASE_DIR,
            env=self.env,
        )
        return self

    def request(self, method: str, path: str, *, headers=None, body: bytes | None = None, timeout: float = 10):
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return Response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.headers, error.read())

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def wait_for(self, check, timeout: float = 20, interval: float = 0.25):
        """Poll ``check()`` until it returns a truthy value; return the last value either way."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(interval)
