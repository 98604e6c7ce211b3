"""Debian's nginx with the repository's config (deploy/nginx.conf) in a subprocess, for tests.

Everything it writes (pid, temporary files) stays under a private prefix directory; logs go to a file.
"""

import os
import shutil
import socket
import tempfile
from pathlib import Path
from string import Template

from tests.support.live_server import BASE_DIR, free_port
from tests.support.processes import ManagedProcess

TEMPLATE = BASE_DIR / "deploy" / "nginx.conf"
PLACEHOLDERS = ("BRIKK_NGINX_LISTEN", "BRIKK_UPSTREAM", "BRIKK_EVENTS_UPSTREAM", "BRIKK_MAX_BODY_BYTES")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def render(**values) -> str:
    """deploy/nginx.conf with its placeholders filled, as `envsubst '${BRIKK_...}'` does (nginx's own
    $variables are left alone)."""
    assert set(values) == set(PLACEHOLDERS), values
    text = Template(TEMPLATE.read_text()).safe_substitute({name: str(value) for name, value in values.items()})
    assert "${BRIKK_" not in text
    return text


class Nginx(ManagedProcess):
    name = "nginx"
    stop_grace_seconds = 10

    def __init__(self, upstream: str, *, max_body_bytes: int, log_path: Path, events_upstream: str | None = None):
        super().__init__(log_path)
        self.port = free_port()
        self.upstream = upstream
        self.events_upstream = events_upstream or upstream
        self.max_body_bytes = max_body_bytes
        # Readable by nginx's unprivileged workers (which write request bodies into it) even when the
        # test runs as root in a private temporary directory.
        self.prefix = Path(tempfile.mkdtemp(prefix="brikk-nginx-"))
        self.prefix.chmod(0o755)

    def start(self, timeout: float = 20) -> "Nginx":
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is missing: `make nginx` installs Debian's package")
        config = self.prefix / "nginx.conf"
        config.write_text(
            render(
                BRIKK_NGINX_LISTEN=f"127.0.0.1:{self.port}",
                BRIKK_UPSTREAM=self.upstream,
                BRIKK_EVENTS_UPSTREAM=self.events_upstream,
                BRIKK_MAX_BODY_BYTES=self.max_body_bytes,
            )
        )

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        self.launch(
            [binary, "-e", "stderr", "-p", f"{self.prefix}/", "-c", str(config), "-g", "daemon off;"],
            ready=listening,
            timeout=timeout,
        )
        return self

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.prefix, ignore_errors=True)
