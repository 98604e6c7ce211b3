"""A real webhook receiver on 127.0.0.1 (a threaded http.server) that verifies every request with the
standardwebhooks package — the reference implementation, not Brikk's code — and answers from a script: statuses,
Retry-After, a delay past the dispatcher's timeout, or a request held until the test releases it."""

import datetime
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict = field(default_factory=dict)
    delay: float = 0  # seconds before answering (past the timeout: a hang)
    hold: threading.Event | None = None  # answer only once this is set (or after 60 s)


@dataclass
class Request:
    headers: dict  # lower-cased names
    body: bytes
    started: float
    verified_by: list[int]  # indexes of the receiver's secrets whose check passed (the whole header)
    signatures_verified_by: list[list[int]]  # per signature of the header, which secrets verify it alone
    ended: float | None = None

    @property
    def payload(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


def verify(secrets: list[str], body: bytes, headers: dict) -> tuple[list[int], list[list[int]]]:
    def passes(secret, header_values) -> bool:
        try:
            Webhook(secret).verify(body, header_values)
        except WebhookVerificationError:
            return False
        return True

    whole = [index for index, secret in enumerate(secrets) if passes(secret, headers)]
    each = []
    for signature in headers.get("webhook-signature", "").split(" "):
        alone = {**headers, "webhook-signature": signature}
        each.append([index for index, secret in enumerate(secrets) if passes(secret, alone)])
    return whole, each


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # listen()'s backlog: the default 5 drops connections opened at once (1 s SYN retry)


class WebhookReceiver:
    """Answers requests in order from ``script`` (Reply), then ``default`` for ever. Thread-safe."""

    def __init__(self, secrets: list[str], script=(), default: Reply | None = None, tls: ssl.SSLContext | None = None):
        self.secrets = list(secrets)
        self.sni_names: list[str | None] = []  # the server name each TLS client asked for
        self.script = list(script)
        self.default = default or Reply()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                whole, each = verify(receiver.secrets, body, headers)
                request = Request(headers, body, time.monotonic(), whole, each)
                with receiver._lock:
                    receiver.requests.append(request)
                    reply = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver._in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver._in_flight)
                try:
                    if reply.hold is not None:
                        reply.hold.wait(60)
                    time.sleep(reply.delay)
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the dispatcher gave up (timeout) or died
                    self.close_connection = True
                finally:
                    request.ended = time.monotonic()
                    with receiver._lock:
                        receiver._in_flight -= 1

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/brikk"
        if tls is not None:
            tls.sni_callback = lambda _socket, name, _context: self.sni_names.append(name)
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self.url = f"https://localhost:{self.port}/hooks/brikk"

    def __enter__(self) -> "WebhookReceiver":
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self._httpd.shutdown()
        self._httpd.server_close()

    def wait_for(self, count: int, timeout: float = 30) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.requests)} of {count} pushes arrived within {timeout} s")


def closed_port_url() -> str:
    """A 127.0.0.1 URL nothing listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def self_signed(directory, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for DNS name ``name`` (files in ``directory``): the server's TLS context, and a client
    context that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client
