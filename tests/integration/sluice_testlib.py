"""Helpers for Sluice's integration tests: waiting, ports, paths, HTTP, a RESP client, and the
real servers (redis-server, the sluice broker) that the tests start for themselves.

Rules these helpers enforce (see tests/CMakeLists.txt and the project rules):
- every wait is `wait_for(predicate, ...)` with a deadline, never a fixed sleep;
- a missing server binary FAILS the test with the reason, it never skips;
- servers listen on 127.0.0.1 only, on private ports, with state in temporary directories.

Only the standard library and python3-yaml (Debian's, importable by /usr/bin/python3) are used.
"""

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import http.client as _httpclient
from pathlib import Path

import yaml

__all__ = [
    "wait_for", "timeout_scale", "free_port", "repo_root", "build_dir", "sluice_bin",
    "runtime_path", "function_config", "http", "invoke", "Response", "RespClient", "RedisError",
    "RedisServer", "Broker", "BrokerExited", "tail",
]


# ---------------------------------------------------------------------------------------------
# Waiting, ports, paths

def timeout_scale():
    """Multiplier for every default deadline: tests/run.sh sets SLUICE_TIMEOUT_SCALE for the
    sanitizer tree, which runs several times slower. Explicit timeouts are scaled too."""
    try:
        return max(1.0, float(os.environ.get("SLUICE_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def wait_for(predicate, timeout=10.0, interval=0.02, what=None, ignore_exceptions=True):
    """Polls predicate() until it returns a truthy value, and returns that value.

    Raises AssertionError naming `what` and the last value (or the last exception the predicate
    raised, when ignore_exceptions is true; otherwise the exception propagates at once) when
    `timeout` seconds (times SLUICE_TIMEOUT_SCALE) pass first. This is the only way tests wait.
    """
    what = what or getattr(predicate, "__name__", repr(predicate))
    deadline = time.monotonic() + timeout * timeout_scale()
    last, last_exc, tries = None, None, 0
    while True:
        tries += 1
        try:
            last = predicate()
            last_exc = None
        except Exception as exc:  # noqa: BLE001 - reported below
            if not ignore_exceptions:
                raise
            last, last_exc = None, exc
        if last:
            return last
        now = time.monotonic()
        if now >= deadline:
            if last_exc is not None:
                got = "raised %s: %s" % (type(last_exc).__name__, last_exc)
            else:
                got = "last value %s" % (_short_repr(last),)
            raise AssertionError("timed out after %.1f s (%d tries) waiting for %s; %s"
                                 % (timeout * timeout_scale(), tries, what, got)) from last_exc
        time.sleep(min(interval, deadline - now))


def _short_repr(v, limit=500):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "...(%d chars)" % len(r)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host, port, timeout=0.5):
    """True when a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def repo_root():
    """The source tree: $SLUICE_SRC, else two levels above this file."""
    env = os.environ.get("SLUICE_SRC")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def build_dir():
    """The build tree under test: $SLUICE_BUILD, else <repo>/build."""
    env = os.environ.get("SLUICE_BUILD")
    return Path(env) if env else repo_root() / "build"


def sluice_bin():
    """The sluice binary under test: $SLUICE_BIN, else <build>/sluice."""
    env = os.environ.get("SLUICE_BIN")
    return Path(env) if env else build_dir() / "sluice"


def runtime_path(name):
    """Path of an example Runtime API client built by examples/: <build>/examples/<name>-runtime."""
    return build_dir() / "examples" / ("%s-runtime" % name)


def function_config(name, runtime, handler, **extra):
    """A Functions entry running one of the C example runtimes (echo, fail, sleep) with
    `handler`; extra keys (Timeout, EventInvokeConfig, ...) are added or override."""
    d = {
        "FunctionName": name,
        "Command": [str(runtime_path(runtime))],
        "Handler": handler,
        "Timeout": 3,
        "MemorySize": 128,
    }
    d.update(extra)
    return d


def tail(text, lines=80):
    """The last `lines` lines of text."""
    parts = text.splitlines()
    return "\n".join(parts[-lines:])


# ---------------------------------------------------------------------------------------------
# HTTP

class Response(collections.namedtuple("Response", "status headers body")):
    """(status, headers with lowercase names, body bytes); unpacks as a 3-tuple."""

    __slots__ = ()

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")


def _encode_body(body, headers):
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    return json.dumps(body).encode("utf-8")


def http(method, url, body=None, headers=None, timeout=30):
    """One HTTP/1.1 request on a fresh connection.

    body: bytes and str are sent as they are; anything else is sent as JSON (with
    Content-Type: application/json unless headers name one). Returns a Response
    (status, headers-dict-lowercase, body bytes); repeated headers are joined with ", ".
    """
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        raise ValueError("http(): only http:// URLs, got %r" % url)
    headers = dict(headers or {})
    data = _encode_body(body, headers)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    conn = _httpclient.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        hdrs = {}
        for k, v in resp.getheaders():
            k = k.lower()
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        return Response(resp.status, hdrs, payload)
    finally:
        conn.close()


def invoke(broker, fn, payload, invocation_type="RequestResponse", log_type=None,
           qualifier=None, client_context=None, headers=None, timeout=60):
    """Lambda Invoke: POST /2015-03-31/functions/{fn}/invocations on `broker` (a Broker or a
    base URL). payload: bytes/str raw, anything else as JSON. Returns a Response."""
    base = broker.url if hasattr(broker, "url") else str(broker).rstrip("/")
    url = "%s/2015-03-31/functions/%s/invocations" % (base, urllib.parse.quote(fn, safe=":"))
    if qualifier is not None:
        url += "?Qualifier=" + urllib.parse.quote(str(qualifier), safe="")
    h = {"X-Amz-Invocation-Type": invocation_type}
    if log_type is not None:
        h["X-Amz-Log-Type"] = log_type
    if client_context is not None:
        h["X-Amz-Client-Context"] = client_context
    h.update(headers or {})
    if not isinstance(payload, (bytes, str)):
        payload = json.dumps(payload)
    return http("POST", url, body=payload, headers=h, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# A small RESP2 client (the python3 `redis` package is deliberately not a dependency)

class RedisError(Exception):
    """An error reply (-ERR ...) from the server."""


class RespClient:
    """A blocking RESP2 client on one TCP connection. cmd() decodes bulk strings as UTF-8
    (invalid bytes kept via surrogateescape); cmd_raw() returns them as bytes."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def close(self):
        try:
            self.rfile.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _arg(a):
        if isinstance(a, bytes):
            return a
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            return repr(a).encode() if isinstance(a, float) else str(a).encode()
        if isinstance(a, str):
            return a.encode("utf-8")
        raise TypeError("RESP argument must be bytes, str, int or float, not %r" % type(a))

    def cmd_raw(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = self._arg(a)
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def cmd(self, *args):
        return _decode(self.cmd_raw(*args))

    def _line(self):
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis connection closed mid-reply (got %r)" % line)
        return line[:-2]

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", errors="surrogateescape")
        if kind == b"-":
            raise RedisError(rest.decode("utf-8", errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionError("redis connection closed mid-bulk-string")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError("unexpected RESP reply %r" % line)


def _decode(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="surrogateescape")
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


# ---------------------------------------------------------------------------------------------
# redis-server

class RedisServer:
    """A real redis-server on 127.0.0.1:<free port>, no persistence, data dir in `workdir`."""

    def __init__(self, workdir, port=None):
        self.workdir = Path(workdir)
        self.host = "127.0.0.1"
        self.port = port
        self._fixed_port = port is not None
        self.proc = None
        self._client = None
        self.log_path = self.workdir / "redis.log"

    @property
    def url(self):
        return "redis://%s:%d" % (self.host, self.port)

    def start(self, attempts=3):
        exe = shutil.which("redis-server")
        if exe is None:
            raise AssertionError("redis-server is not on PATH (PATH=%s): the integration tests "
                                 "need a real Redis; run deploy/bootstrap.sh as root"
                                 % os.environ.get("PATH"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The port is picked before redis binds it, so another test may take it in between:
        # retry on a fresh port when redis exits early.
        for attempt in range(attempts):
            port = self.port or free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
                     "--protected-mode", "no", "--logfile", ""],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            self.port = port

            def ready():
                if self.proc.poll() is not None:
                    return "exited"
                try:
                    with RespClient(self.host, port, timeout=1.0) as c:
                        return c.cmd("PING") == "PONG"
                except (OSError, RedisError):
                    return False

            state = wait_for(ready, timeout=20,
                             what="redis-server on port %d to answer PING" % port)
            if state is True:
                return self
            if attempt + 1 == attempts or self._fixed_port:
                break
            self.port = None
        raise AssertionError("redis-server exited with %s before answering PING; log tail:\n%s"
                             % (self.proc.returncode, tail(self.log_text())))

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, timeout=10.0):
        """A new RespClient connection (close it, or use it as a context manager)."""
        return RespClient(self.host, self.port, timeout=timeout)

    def cmd(self, *args):
        """One command on a shared connection; bulk strings decoded to str."""
        if self._client is None:
            self._client = self.client()
        try:
            return self._client.cmd(*args)
        except (OSError, ConnectionError):
            self._client = None
            raise

    def cmd_raw(self, *args):
        """Like cmd() but bulk strings stay bytes."""
        if self._client is None:
            self._client = self.client()
        return self._client.cmd_raw(*args)

    def stop(self):
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# The broker

class BrokerExited(AssertionError):
    """The broker exited before it became ready."""


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "SUMMARY: UndefinedBehaviorSanitizer")


class Broker:
    """One `sluice serve --config <file>` process.

    config: a dict written as YAML to <workdir>/sluice.yaml; `Listen` defaults to 127.0.0.1:0
    and `StateDir` to <workdir>/state. The broker writes <StateDir>/sluice.addr ("host:port\\n")
    once its API listens; start() waits for that file and for the port to accept connections.
    stdout and stderr go to <workdir>/broker.log (appended across restarts).
    """

    def __init__(self, workdir, config=None, env=None, binary=None, args=None,
                 check_exit=True, ready_timeout=30.0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config or {})
        self.config.setdefault("Listen", "127.0.0.1:0")
        self.config.setdefault("StateDir", str(self.workdir / "state"))
        self.state_dir = Path(self.config["StateDir"])
        self.config_path = self.workdir / "sluice.yaml"
        self.log_path = self.workdir / "broker.log"
        self.binary = Path(binary) if binary else sluice_bin()
        self.extra_args = list(args or [])
        self.env = dict(env or {})
        # When true, a broker still running at teardown must exit 0 on SIGTERM. Tests that
        # expect an unclean exit set it to False. Sanitizer reports in the log always fail.
        self.check_exit = check_exit
        self.ready_timeout = ready_timeout
        self.proc = None
        self.host = None
        self.port = None
        self._pgids = []
        self._starts = 0

    # -- lifecycle

    @property
    def addr_path(self):
        return self.state_dir / "sluice.addr"

    @property
    def url(self):
        if self.port is None:
            raise AssertionError("broker not started")
        return "http://%s:%d" % (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def write_config(self):
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False,
                                                   default_flow_style=False))

    def start(self):
        if self.running():
            raise AssertionError("broker already running (pid %d)" % self.proc.pid)
        if not self.binary.exists():
            raise AssertionError("sluice binary %s does not exist: build it first (SLUICE_BIN=%s)"
                                 % (self.binary, os.environ.get("SLUICE_BIN")))
        self.write_config()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # A stale address from the previous run would make us talk to a dead port.
        try:
            self.addr_path.unlink()
        except FileNotFoundError:
            pass
        self._starts += 1
        env = dict(os.environ)
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            log.write(b"==== sluice start #%d: %s serve --config %s ====\n"
                      % (self._starts, bytes(self.binary), bytes(self.config_path)))
            log.flush()
            # Own session and process group, so teardown can kill workers left by a SIGKILL.
            self.proc = subprocess.Popen(
                [str(self.binary), "serve", "--config", str(self.config_path)] + self.extra_args,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=str(self.workdir), start_new_session=True)
        self._pgids.append(self.proc.pid)
        self.host = self.port = None

        def ready():
            if self.proc.poll() is not None:
                raise BrokerExited("sluice exited with %s before it was ready; log tail:\n%s"
                                   % (self.proc.returncode, tail(self.log_text())))
            try:
                text = self.addr_path.read_text()
            except FileNotFoundError:
                return False
            if not text.endswith("\n"):
                return False  # still being written
            host, _, port = text.strip().rpartition(":")
            if not host or not port.isdigit():
                raise AssertionError("%s holds %r, not host:port" % (self.addr_path, text))
            host = host.strip("[]")
            if not port_open(host, int(port)):
                return False
            self.host, self.port = host, int(port)
            return True

        try:
            wait_for(ready, timeout=self.ready_timeout, ignore_exceptions=False,
                     what="sluice to write %s and accept connections" % self.addr_path)
        except BrokerExited:
            raise
        except AssertionError as exc:
            self._kill_groups(signal.SIGKILL)
            raise AssertionError("%s\nbroker log tail:\n%s" % (exc, tail(self.log_text()))) from None
        return self

    def kill(self, sig=signal.SIGKILL):
        """Sends `sig` to the broker process (not its workers)."""
        if self.proc is None:
            raise AssertionError("broker not started")
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=30.0):
        """Waits for the broker to exit; returns its exit code (negative: killed by that signal).
        Raises AssertionError if it is still running after `timeout` s (times the scale)."""
        if self.proc is None:
            raise AssertionError("broker not started")
        try:
            return self.proc.wait(timeout=timeout * timeout_scale())
        except subprocess.TimeoutExpired:
            raise AssertionError("sluice (pid %d) still running after %.1f s; log tail:\n%s"
                                 % (self.proc.pid, timeout * timeout_scale(),
                                    tail(self.log_text()))) from None

    def stop(self, timeout=30.0):
        """SIGTERM, then waits up to `timeout` s; returns the exit code. A broker that ignores
        SIGTERM is SIGKILLed and an AssertionError raised."""
        if self.proc is None:
            raise AssertionError("broker not started")
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.wait_exit(timeout)
            except AssertionError:
                self._kill_groups(signal.SIGKILL)
                self.proc.wait()
                raise
        return self.proc.returncode

    def restart(self):
        """Stops the broker if it runs (SIGTERM), then starts it with the same config and state."""
        if self.running():
            self.stop()
        return self.start()

    def api(self, method, path, body=None, headers=None, timeout=30):
        """http(method, self.url + path, ...): one request to the broker's API."""
        return http(method, self.url + path, body=body, headers=headers, timeout=timeout)

    # -- inspection

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sanitizer_report(self):
        """The first sanitizer report line in the log, or None."""
        for line in self.log_text().splitlines():
            if any(m in line for m in SANITIZER_MARKERS):
                return line
        return None

    # -- teardown

    def _kill_groups(self, sig):
        for pgid in self._pgids:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self):
        """Teardown: stops a running broker, kills leftover workers. Returns a list of problems:
        a non-zero exit on SIGTERM here (when check_exit), a broker that ignored SIGTERM (when
        check_exit), and any sanitizer report in the log (always)."""
        problems = []
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    rc = self.stop()
                    if rc != 0 and self.check_exit:
                        problems.append("sluice exited with %s on SIGTERM at teardown" % rc)
                except AssertionError as exc:
                    if self.check_exit:
                        problems.append(str(exc).splitlines()[0])
            self._kill_groups(signal.SIGKILL)
        report = self.sanitizer_report()
        if report:
            problems.append("sanitizer report in broker log: " + report)
        return problems
