"""The real python-socketio client against the real switchyard binary.

Spawns `switchyard serve` on a free port with a temporary SQLite database and
an HS256 secret, mints tokens with the standard library, and checks connect,
session, subscribe, ping and a refused connection.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import socketio

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "switchyard-python-e2e-secret-0123456789"

SERVER_VARS = [
    "HOST", "PORT", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "NODE_ID", "JWT_SECRET",
    "JWT_PUBLIC_KEY_FILE", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_LEEWAY", "API_KEYS", "CORS_ORIGINS",
    "WS_MAX_SUBSCRIPTIONS", "LOG_FORMAT", "RUST_LOG", "SWITCHYARD_ENV", "CATALOG_FILE",
    "JWT_MAX_TTL", "API_KEY_FAILURE_LIMIT", "WS_USER_RATE_LIMIT", "WS_USER_RATE_BURST",
]


# --------------------------------------------------------------------------- tokens

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(sub="u1", company_id="acme", role="operator", ttl=3600, secret=SECRET, **extra) -> str:
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"sub": sub, "companyId": company_id, "role": role, "iat": now, "exp": now + ttl, **extra}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


# --------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> Path:
    path = Path(os.environ.get("SWITCHYARD_BIN") or REPO_ROOT / "target" / "debug" / "switchyard")
    if not path.exists():
        pytest.fail(f"switchyard binary not found at {path}: run `cargo build` or set SWITCHYARD_BIN")
    return path


class Server:
    def __init__(self, env: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = tempfile.mkdtemp(prefix="sy-py-")
        full_env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
        full_env.update({
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": f"sqlite://{self.workdir}/sy-{uuid.uuid4().hex[:12]}.db",
            "JWT_SECRET": SECRET,
            "SWITCHYARD_ENV": "development",
            "LOG_FORMAT": "text",
            "RUST_LOG": "info",
        })
        full_env.update(env)
        self.log_path = Path(self.workdir) / "server.log"
        self._log = open(self.log_path, "wb")
        # cwd = a fresh temp dir, so no developer .env is loaded.
        self.proc = subprocess.Popen(
            [str(binary()), "serve"], env=full_env, cwd=self.workdir,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-8000:]

    def wait_live(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/live", timeout=1) as res:
                    if res.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not live within {timeout}s\n{self.logs()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@pytest.fixture(scope="module")
def server():
    srv = Server({})
    srv.wait_live()
    yield srv
    srv.stop()


@pytest.fixture
def dump_logs_on_failure(request, server):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n--- server output ---\n{server.logs()}")


# --------------------------------------------------------------------------- client

class Client:
    """A socketio.Client that records `session` and `connect_error` payloads."""

    def __init__(self):
        self.sio = socketio.Client(reconnection=False)
        self.session = None
        self.session_event = threading.Event()
        self.connect_errors = []

        @self.sio.on("session")
        def on_session(data):
            self.session = data
            self.session_event.set()

        @self.sio.on("connect_error")
        def on_connect_error(data=None):
            self.connect_errors.append(data)

    def connect(self, url, token):
        self.sio.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


@pytest.fixture
def client(dump_logs_on_failure):
    c = Client()
    yield c
    c.close()


def test_connect_session_subscribe_ping(server, client):
    client.connect(server.url, mint(sub="py-user", company_id="acme", role="supervisor"))
    assert client.session_event.wait(5), "no session event within 5 s"
    s = client.session
    assert s["socketId"] == client.sio.get_sid("/")
    assert s["userId"] == "py-user"
    assert s["companyId"] == "acme"
    assert s["role"] == "supervisor"
    assert sorted(s["rooms"]) == sorted(["company", "user:py-user", "role:supervisor"])
    assert isinstance(s["serverTime"], (int, float)) and abs(s["serverTime"] - time.time() * 1000) < 60_000
    assert s["replayed"] == 0

    ack = client.sio.call("subscribe", {"room": "order:1"}, timeout=5)
    assert ack == {"ok": True, "rooms": ["order:1"], "denied": []}

    rooms = client.sio.call("rooms", {}, timeout=5)
    assert rooms["ok"] is True
    assert sorted(rooms["rooms"]) == sorted(["company", "user:py-user", "role:supervisor", "order:1"])

    before = time.time() * 1000
    pong = client.sio.call("ping", {}, timeout=5)
    assert pong["pong"] is True
    assert isinstance(pong["serverTime"], (int, float)) and abs(pong["serverTime"] - before) < 60_000


def test_bad_token_is_refused_with_invalid_token(server, client):
    bad = mint(secret="not-the-server-secret")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server.url, bad)
    # python-socketio raises "One or more namespaces failed to connect"; the
    # server's refusal is in the connect_error payload: { message: "CODE: ..." }.
    assert client.connect_errors, "connect_error handler was not called"
    data = client.connect_errors[0]
    message = data.get("message") if isinstance(data, dict) else data
    assert isinstance(message, str) and message.startswith("INVALID_TOKEN: "), f"connect_error: {data!r}"
    assert client.session is None


@pytest.fixture(scope="module")
def cors_server():
    srv = Server({"CORS_ORIGINS": "https://floor.example"})
    srv.wait_live()
    yield srv
    srv.stop()


def test_websocket_transport_with_cors_origins_set(cors_server):
    """websocket-client sends `Origin: http://host:port` (the server's own
    origin); with CORS_ORIGINS listing only browser origins it must connect."""
    c = Client()
    try:
        c.connect(cors_server.url, mint(sub="py-native", company_id="acme", role="operator"))
        assert c.session_event.wait(5), f"no session event within 5 s\n{cors_server.logs()}"
        assert c.sio.transport() == "websocket"
        assert c.session["userId"] == "py-native"
        assert c.sio.call("ping", {}, timeout=5)["pong"] is True
    finally:
        c.close()
