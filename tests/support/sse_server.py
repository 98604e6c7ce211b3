"""A real HTTP/1.1 server on 127.0.0.1 that streams ``text/event-stream`` (chunked transfer encoding) from a
script, one scripted answer per connection to the stream, and answers the inbox's ack and nack: for testing the
client's listener (parsing, acks, reconnects, Retry-After, dead connections) over real sockets."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.scripted_server import Received

CLOSE, DROP, HANG = "close", "drop", "hang"


@dataclass
class Stream:
    """200 and ``chunks`` (bytes each sent as one HTTP chunk; a number pauses that many seconds), then ``end``:
    CLOSE (the terminating chunk), DROP (the socket closed mid-body) or HANG (silence until the server stops)."""

    chunks: list = field(default_factory=list)
    end: str = CLOSE


@dataclass
class Refuse:
    status: int
    body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)


SCRIPT_OVER = Refuse(401, {"code": "unauthorized", "message": "The script is over."})


def message_event(message: dict) -> bytes:
    """One stream event as the server sends it: the message id, type ``message``, the item as JSON data."""
    return f"id: {message['id']}\nevent: message\ndata: {json.dumps(message)}\n\n".encode()


class SSEServer:
    """Answers connections to the stream in order from ``script``; then SCRIPT_OVER (401). Records the stream
    requests (``streams``) and the acks and nacks (``settled``: (action, body) pairs, in order)."""

    def __init__(self, script=()):
        self.script = list(script)
        self.streams: list[Received] = []
        self.settled: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, body, headers=None):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                action = self.path.rsplit("/", 1)[-1]
                with server._lock:
                    server.settled.append((action, body))
                self._json(200, {"results": [{"receipt": r, "result": "ok"} for r in body["receipts"]]})

            def do_GET(self):
                with server._lock:
                    server.streams.append(Received("GET", self.path, dict(self.headers.items()), b"", time.monotonic()))
                    answer = server.script.pop(0) if server.script else SCRIPT_OVER
                if isinstance(answer, Refuse):
                    self._json(answer.status, answer.body, answer.headers)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in answer.chunks:
                        if isinstance(chunk, int | float):
                            time.sleep(chunk)
                        else:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    if answer.end == CLOSE:
                        self.wfile.write(b"0\r\n\r\n")
                    elif answer.end == HANG:
                        server._stopping.wait(30)
                except OSError:  # the client went away
                    pass
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
