"""The real ASGI server (uvicorn serving brikk.asgi, as deploy/ and compose.yaml run it) in a subprocess."""

import os
import sys
from pathlib import Path

from tests.support.live_server import BASE_DIR, LiveServer, free_port
from tests.support.processes import ManagedProcess

UVICORN = str(Path(sys.executable).with_name("uvicorn"))


class AsgiServer(LiveServer):
    name = "uvicorn"
    stop_grace_seconds = 10

    def __init__(self, env: dict, *, log_path: Path, workers: int = 1):
        ManagedProcess.__init__(self, log_path)
        self.port = free_port()
        self.env = {**os.environ, **env}
        self.workers = workers

    def start(self, timeout: float = 30) -> "AsgiServer":
        self.launch(
            [UVICORN, "brikk.asgi:application", "--host", "127.0.0.1", "--port", str(self.port)]
            + ["--workers", str(self.workers), "--loop", "uvloop", "--http", "httptools"]
            + ["--no-access-log", "--timeout-graceful-shutdown", "2", "--backlog", "4096"],
            ready=lambda: self.get("/healthz", timeout=1).status == 200,
            timeout=timeout,
            cwd=BASE_DIR,
            env=self.env,
        )
        return self

    def threads(self) -> int:
        """The server process's threads right now (uvicorn with one worker serves in its own process)."""
        return len(os.listdir(f"/proc/{self.process.pid}/task"))

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")
