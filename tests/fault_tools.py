"""Tools for the fault-injection tests (tests/test_faults.py) and the soak (scripts/soak.py): a
private redis-server that a test stops and starts by PID, a fault-injecting HTTPS proxy in front of
the Cosmos DB stand-in, a consumer process to SIGKILL, and an object store whose Nth upload fails.
Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import pyarrow.fs as pafs

from pipeline.adapters.azure.blob_store import BlobObjectStore
from pipeline.adapters.embedded.local_store import LocalObjectStore
from pipeline.ports import ObjectStore

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = ROOT / "node_modules" / "@vercel" / "cosmosdb-server"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection",
                        "upgrade", "te", "trailer"})
DOCUMENT_CREATE = re.compile(r"^/dbs/[^/]+/colls/[^/]+/docs/?$")
_CLIENT_CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # made once: loading CAs costs ~50 ms a time
_CLIENT_CONTEXT.check_hostname, _CLIENT_CONTEXT.verify_mode = False, ssl.CERT_NONE  # the stand-in's own cert


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers on 127.0.0.1:{port} after {timeout:g} s") from None
            time.sleep(0.05)


def start_cosmos_stand_in(folder: Path, keepalive: bool) -> tuple[subprocess.Popen[bytes], int]:
    """The Cosmos DB stand-in on a free loopback port, logging into `folder`: with keep-alive (as
    real Cosmos DB keeps connections) or, as its own CLI (and `make test`) runs it, closing every
    connection. Stop it with `stop_process`."""
    node = shutil.which("node")
    if node is None or not (STAND_IN / "lib" / "index.js").exists():
        sys.exit("node and node_modules/@vercel/cosmosdb-server are needed (scripts/services.sh install)")
    port = free_port()
    script = (f"require({str(STAND_IN / 'lib')!r}).createHttpsServer({{keepAlive: {str(keepalive).lower()}}})"
              f".listen({port}, '127.0.0.1')")
    log = (folder / "cosmos.log").open("wb")
    process = subprocess.Popen([node, "--max-old-space-size=8192", "-e", script], stdin=subprocess.DEVNULL,
                               stdout=log, stderr=log)
    log.close()  # the child holds its own copy
    wait_for_port(port)
    return process, port


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """TERM the process we started (by its PID), KILL it if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class RedisServer:
    """A redis-server of our own on a free loopback port, in its own folder. With `persist`, a
    stop (SIGTERM) saves the data set and the next start loads it, like a restarted cache."""

    def __init__(self, folder: Path, *, persist: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (scripts/services.sh install)")
        self.binary, self.folder, self.persist = binary, folder, persist
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        save = ["--save", "3600 1", "--dbfilename", "dump.rdb"] if self.persist else ["--save", ""]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "no", *save,
             "--dir", str(self.folder), "--daemonize", "no", "--logfile", str(self.folder / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@dataclass(frozen=True)
class Fault:
    status: int  # the answer the client gets instead of the server's
    retry_after_ms: int | None = None
    forward_first: bool = False  # the server does the write, then its answer is lost
    delay: float = 0.0  # seconds the (healthy, slow) server takes before it answers


@dataclass
class Attempt:
    at: float  # time.monotonic() when the request arrived
    item_id: str
    status: int  # what the client was answered


@dataclass
class FaultProxy:
    """HTTPS on 127.0.0.1 in front of the Cosmos DB stand-in. Document creates go through
    `plan(n, item_id)` (n counts creates from 1): a Fault to answer instead, or None to forward.
    Every other request is forwarded. The account metadata names the stand-in's own address as
    its write and read locations, which the SDK would follow past the proxy: it is rewritten to
    the proxy's. Each create is logged in `attempts`."""

    upstream: str  # https://127.0.0.1:8081
    plan: Callable[[int, str], Fault | None] = lambda n, item_id: None
    attempts: list[Attempt] = field(default_factory=list)
    creates: int = 0
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(STAND_IN / "cert.pem", STAND_IN / "key.pem")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        # The handshake happens in each request's thread, not in the one accepting connections.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        server.proxy = self  # type: ignore[attr-defined]
        self.port = int(server.server_address[1])
        self._server = server
        threading.Thread(target=server.serve_forever, name="cosmos-fault-proxy", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def decide(self, method: str, path: str, query: bool, body: bytes) -> tuple[str, Fault | None]:
        if method != "POST" or query or not DOCUMENT_CREATE.match(path.split("?")[0]):
            return "", None
        item_id = str(json.loads(body).get("id", ""))
        with self._lock:
            self.creates += 1
            return item_id, self.plan(self.creates, item_id)

    def record(self, item_id: str, at: float, status: int) -> None:
        if item_id:
            with self._lock:
                self.attempts.append(Attempt(at, item_id, status))

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]],
                                                                                           bytes]:
        upstream = urlparse(self.upstream)
        connection = http.client.HTTPSConnection(upstream.hostname or "127.0.0.1", upstream.port or 443,
                                                 context=_CLIENT_CONTEXT, timeout=60)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            own, theirs = f"127.0.0.1:{self.port}", upstream.netloc
            return (response.status, [(k, v.replace(theirs, own)) for k, v in response.getheaders()],
                    data.replace(theirs.encode(), own.encode()))
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = self.headers.get("x-ms-documentdb-isquery") is not None or "query+json" in (
            self.headers.get("Content-Type") or "")
        item_id, fault = proxy.decide(self.command, self.path, query, body)
        if fault is not None and fault.delay:  # slow, not failing: answered as the server answers
            time.sleep(fault.delay)
            fault = None
        if fault is None or fault.forward_first:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            status, response_headers, data = proxy.forward(self.command, self.path, headers, body)
        if fault is not None:
            status = fault.status
            response_headers = [("Content-Type", "application/json"), ("x-ms-activity-id", "fault-proxy")]
            if fault.retry_after_ms is not None:
                response_headers.append(("x-ms-retry-after-ms", str(fault.retry_after_ms)))
            data = json.dumps({"code": str(status), "message": f"injected {status} by the fault proxy"}).encode()
        proxy.record(item_id, arrived, status)
        self.send_response(status)
        for name, value in response_headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()  # the connection stays open for the client's next request
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay


# ---------------------------------------------------------------------------------------------- a consumer to kill

# A consumer like the Functions host: batch after batch through ingest_batch, then a checkpoint
# (the index of the last acknowledged batch). It reports progress on a pipe and, when told to,
# stops dead after the ledger write or after the counters (before the checkpoint) to be killed.
CONSUMER = r"""
import os, sys, time
from pipeline.app import open_pipeline
from pipeline.settings import Settings
from pipeline.inputs.event_files import json_lines
from pipeline.stages.ingest import ingest_batch
path, size, hold_at, report = sys.argv[1], int(sys.argv[2]), sys.argv[3], os.fdopen(int(sys.argv[4]), "w", 1)
checkpoint = os.path.join(os.path.dirname(path), "checkpoint")
first = int(open(checkpoint).read()) + 1 if os.path.exists(checkpoint) else 0
p = open_pipeline(Settings.from_env())
messages = list(json_lines(path))
state = {"batch": first}
def step(where):
    report.write(f"{where} {state['batch']}\n")
    if hold_at == f"{where}:{state['batch']}":
        time.sleep(600)
append = p.ledger.append
def append_then_step(events):
    appended = append(events)
    step("ledger")
    return appended
p.ledger.append = append_then_step
for number in range(first, (len(messages) + size - 1) // size):
    state["batch"] = number
    step("start")
    ingest_batch(messages[number * size:(number + 1) * size], p.ledger, p.counters, p.dead_letters, p.pricer)
    step("counters")
    with open(checkpoint + ".tmp", "w") as file:
        file.write(str(number))
    os.replace(checkpoint + ".tmp", checkpoint)
report.write("done\n")
p.close()
"""


def run_consumer(data: Path, env: dict[str, str], hold_at: str = "-", kill_after: float | None = None) -> str:
    """Run the consumer; SIGKILL it once it holds (or `kill_after` seconds after its first batch
    starts). Returns the last progress line it wrote."""
    read, write = os.pipe()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEBACK_")} | env | {
        "PYTHONWARNINGS": "ignore:Unverified HTTPS request"}  # the stand-in's self-signed certificate
    process = subprocess.Popen([sys.executable, "-c", CONSUMER, str(data), "10", hold_at, str(write)],
                               env=child_env, cwd=ROOT, pass_fds=(write,))
    os.close(write)
    last, buffer = "", b""
    try:
        with os.fdopen(read, "rb") as pipe:
            while True:
                ready, _, _ = select.select([pipe], [], [], kill_after if kill_after and last else 120)
                if not ready:
                    break  # kill_after elapsed, or the consumer is stuck
                chunk = os.read(pipe.fileno(), 4096)
                if not chunk:
                    break  # it exited
                buffer += chunk
                last = buffer.decode().splitlines()[-1]
                if last in (hold_at.replace(":", " "), "done"):
                    break
    finally:
        process.kill()  # SIGKILL: no cleanup, no atexit, like a host crash
        process.wait(30)
    return last


# ---------------------------------------------------------------------------------------------- a store that fails

class FailingStore:
    """A store whose `fail_at`-th put fails; with `partial`, that upload first leaves half of its
    bytes where the store keeps uploads in progress (a hidden temporary file; uncommitted blocks)."""

    def __init__(self, store: ObjectStore, fail_at: int, partial: bool) -> None:
        self.store, self.fail_at, self.partial, self.puts, self.url = store, fail_at, partial, 0, store.url
        self.local_root = store.local_root
        self.failed_key = ""

    def put(self, key: str, data: bytes, *, overwrite: bool) -> bool:
        self.puts += 1
        if self.puts != self.fail_at:
            return self.store.put(key, data, overwrite=overwrite)
        self.failed_key = key
        if self.partial and isinstance(self.store, LocalObjectStore):
            target = self.store.path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.parent / f".{target.name}.halfway.tmp").write_bytes(data[: len(data) // 2])
        elif self.partial and isinstance(self.store, BlobObjectStore):
            blob = self.store.container.get_blob_client(self.store.blob_name(key))
            blob.stage_block(base64.b64encode(b"block-0").decode(), data[: len(data) // 2])
        raise OSError(f"upload of {key} failed halfway (injected)")

    def get(self, key: str) -> bytes | None:
        return self.store.get(key)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def open(self, key: str) -> BinaryIO | None:
        return self.store.open(key)

    def list(self, prefix: str, starting: str = "") -> list[str]:
        return self.store.list(prefix, starting)

    def delete(self, key: str) -> bool:
        return self.store.delete(key)

    def arrow_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return self.store.arrow_filesystem()
