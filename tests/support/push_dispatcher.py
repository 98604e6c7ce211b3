"""`manage.py push_dispatcher` in a subprocess, on the test database, for tests that kill it or run two."""

import os
import signal
import sys
from pathlib import Path

from tests.support.live import database_url
from tests.support.live_server import BASE_DIR
from tests.support.processes import ManagedProcess


class DispatcherProcess(ManagedProcess):
    name = "push_dispatcher"
    stop_grace_seconds = 10

    def __init__(self, log_path: Path, **extra_env):
        super().__init__(log_path)
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            "BRIKK_LOG_FORMAT": "text",
            "BRIKK_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "BRIKK_WEBHOOK_ALLOW_HTTP": "true",
            **{name: str(value) for name, value in extra_env.items()},
        }

    def start(self, name: str, timeout: float = 30) -> "DispatcherProcess":
        self.launch(
            [sys.executable, "manage.py", "push_dispatcher", "--name", name],
            ready=lambda: b"push dispatcher ready" in self.log_path.read_bytes(),
            timeout=timeout,
            cwd=BASE_DIR,
            env=self.env,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crashed or OOM-killed dispatcher."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
