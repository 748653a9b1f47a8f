"""Self-checks of the test fixtures and helpers, against real servers only (redis-server, and a
stdlib HTTP server that stands for nothing but an HTTP peer for the http()/invoke() helpers)."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sluice_testlib import (RedisError, build_dir, free_port, http, invoke, repo_root,
                            runtime_path, wait_for)


# -- redis_server

def test_redis_answers_ping(redis_server):
    assert redis_server.host == "127.0.0.1"
    assert redis_server.url == "redis://127.0.0.1:%d" % redis_server.port
    assert redis_server.cmd("PING") == "PONG"
    info = redis_server.cmd("INFO", "persistence")
    assert "aof_enabled:0" in info


def test_redis_xadd_xrange(redis_server):
    redis_server.cmd("DEL", "selfcheck:s")
    id1 = redis_server.cmd("XADD", "selfcheck:s", "*", "body", "hello", "n", 1)
    id2 = redis_server.cmd("XADD", "selfcheck:s", "*", "body", "wörld")
    assert isinstance(id1, str) and "-" in id1
    entries = redis_server.cmd("XRANGE", "selfcheck:s", "-", "+")
    assert entries == [[id1, ["body", "hello", "n", "1"]], [id2, ["body", "wörld"]]]
    assert redis_server.cmd("XLEN", "selfcheck:s") == 2


def test_redis_binary_values_round_trip(redis_server):
    blob = bytes(range(256)) + b"\r\n$-1\r\n"
    assert redis_server.cmd("SET", "selfcheck:bin", blob) == "OK"
    assert redis_server.cmd_raw("GET", "selfcheck:bin") == blob
    assert redis_server.cmd("GET", "selfcheck:missing") is None


def test_redis_error_reply_raises(redis_server):
    with pytest.raises(RedisError, match="unknown command"):
        redis_server.cmd("NOSUCHCOMMAND")
    # The shared connection stays usable after an error reply.
    assert redis_server.cmd("PING") == "PONG"


def test_redis_client_is_a_separate_connection(redis_server):
    with redis_server.client() as a, redis_server.client() as b:
        assert a.cmd("CLIENT", "ID") != b.cmd("CLIENT", "ID")
        # A blocking read on one connection is woken by a write on another.
        redis_server.cmd("DEL", "selfcheck:blk")
        got = {}
        t = threading.Thread(target=lambda: got.setdefault(
            "r", a.cmd("XREAD", "BLOCK", 10000, "STREAMS", "selfcheck:blk", "$")))
        t.start()
        # Wait until the reader is blocked before writing, so the write is the one it sees.
        wait_for(lambda: "blocked_clients:1" in b.cmd("INFO", "clients"),
                 what="the XREAD to block")
        b.cmd("XADD", "selfcheck:blk", "*", "k", "v")
        t.join(timeout=10)
        assert not t.is_alive()
        assert got["r"][0][0] == "selfcheck:blk"
        assert got["r"][0][1][0][1] == ["k", "v"]


# -- wait_for

def test_wait_for_returns_the_truthy_value():
    calls = []

    def pred():
        calls.append(1)
        return len(calls) >= 3 and {"n": len(calls)}

    assert wait_for(pred, timeout=5, interval=0.001) == {"n": 3}


def test_wait_for_raises_naming_what_and_last_value():
    start = time.monotonic()
    with pytest.raises(AssertionError) as exc:
        wait_for(lambda: [], timeout=0.2, what="the impossible list")
    msg = str(exc.value)
    assert "the impossible list" in msg
    assert "last value []" in msg
    assert time.monotonic() - start >= 0.2


def test_wait_for_reports_the_last_exception():
    def pred():
        raise ValueError("boom 42")

    with pytest.raises(AssertionError, match="boom 42") as exc:
        wait_for(pred, timeout=0.1, what="exploding thing")
    assert "exploding thing" in str(exc.value)
    assert isinstance(exc.value.__cause__, ValueError)
    with pytest.raises(ValueError):
        wait_for(pred, timeout=5, ignore_exceptions=False)


# -- free_port, paths

def test_free_port_is_bindable_on_loopback():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_paths():
    assert (repo_root() / "CMakeLists.txt").is_file()
    assert (repo_root() / "tests" / "integration" / "conftest.py").is_file()
    assert runtime_path("echo") == build_dir() / "examples" / "echo-runtime"


# -- http() and invoke()

class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()},
                           "body": self.rfile.read(n).decode("utf-8")}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Amz-Function-Error", "Unhandled")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _reply

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield "http://127.0.0.1:%d" % srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_http_helper(echo_url):
    status, headers, body = http("PUT", echo_url + "/a/b?x=1", body={"k": [1, 2]})
    assert status == 201
    assert headers["x-amz-function-error"] == "Unhandled"
    got = json.loads(body)
    assert got["method"] == "PUT" and got["path"] == "/a/b?x=1"
    assert got["headers"]["content-type"] == "application/json"
    assert json.loads(got["body"]) == {"k": [1, 2]}
    r = http("GET", echo_url + "/")
    assert r.status == 201 and r.json()["body"] == ""


def test_invoke_helper(echo_url):
    r = invoke(echo_url, "my-fn", {"a": 1}, invocation_type="Event", log_type="Tail")
    got = r.json()
    assert got["path"] == "/2015-03-31/functions/my-fn/invocations"
    assert got["headers"]["x-amz-invocation-type"] == "Event"
    assert got["headers"]["x-amz-log-type"] == "Tail"
    assert json.loads(got["body"]) == {"a": 1}
    got = invoke(echo_url, "f", b"raw bytes", qualifier="$LATEST").json()
    assert got["path"] == "/2015-03-31/functions/f/invocations?Qualifier=%24LATEST"
    assert got["headers"]["x-amz-invocation-type"] == "RequestResponse"
    assert "x-amz-log-type" not in got["headers"]
    assert got["body"] == "raw bytes"
