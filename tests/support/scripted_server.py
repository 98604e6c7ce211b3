"""A real HTTP server on 127.0.0.1 that answers from a script, for testing the client's wire behaviour
(bytes sent, headers, retries, Retry-After) over real sockets rather than a mocked transport."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A scripted answer that makes the server close the connection without responding.
DROP = "drop"


@dataclass
class Answer:
    status: int = 200
    body: object = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    delay: float = 0  # seconds before answering (a long poll)


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float


class ScriptedServer:
    """Answers requests in order from ``script`` (Answer or DROP); once it runs out, repeats ``default``."""

    def __init__(self, script=(), default: Answer | None = None):
        self.script = list(script)
        self.default = default or Answer(200, {"ok": True})
        self.received: list[Received] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.received.append(
                        Received(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    answer = server.script.pop(0) if server.script else server.default
                if answer == DROP:
                    self.close_connection = True
                    return
                time.sleep(answer.delay)
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self._httpd.shutdown()
        self._httpd.server_close()
