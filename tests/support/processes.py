"""A server started in a subprocess for a test: its output in a log file, waited for until it answers, and
always stopped (also when it fails to start), so no test leaves a server behind."""

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ManagedProcess:
    name = "server"
    stop_grace_seconds = 15

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.process = None
        self.log = None

    def launch(self, argv: list[str], *, ready: Callable[[], bool], timeout: float, **popen) -> None:
        """Start ``argv`` and wait until ``ready()`` is true; stop it and raise with its log if it exits or
        never gets ready within ``timeout`` seconds."""
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, **popen)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if ready():
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_grace_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None and not self.log.closed:
            self.log.close()
