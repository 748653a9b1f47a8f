"""Synchronous Invoke through a real broker and real worker processes on the Runtime API."""

import base64
import json
import os
import re
import signal
import threading
from pathlib import Path

import pytest

from sluice_testlib import function_config, http, invoke, runtime_path, wait_for


fn = function_config


def metric(broker, name, function):
    """The value of a Prometheus sample `name{function="..."}` from /metrics."""
    r = http("GET", broker.url + "/metrics")
    assert r.status == 200, r
    pat = re.compile(r'^%s\{function="%s"\} (\S+)$' % (re.escape(name), re.escape(function)),
                     re.M)
    m = pat.search(r.text)
    return float(m.group(1)) if m else None


@pytest.fixture
def broker(broker_factory, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    return broker_factory({
        "Functions": [
            fn("echo", "echo", "echo.handler",
               Environment={"Variables": {"GREETING": "hello"}}),
            fn("env", "echo", "echo.env", CodeUri=str(code), MemorySize=256,
               Environment={"Variables": {"GREETING": "hi there"}}),
            fn("logger", "echo", "echo.log"),
            fn("big", "echo", "echo.big"),
            fn("fail", "fail", "fail.handler"),
            fn("crash", "fail", "fail.crash"),
            fn("initfail", "fail", "fail.init"),
            fn("exitstart", "fail", "fail.exit-at-start"),
            fn("sleepy", "sleep", "sleep.handler", Timeout=1),
            fn("single", "sleep", "sleep.handler", ReservedConcurrentExecutions=1),
            fn("reaped", "echo", "echo.handler", InstanceIdleTimeoutSeconds=1),
        ]
    })


def test_echo_round_trip(broker):
    r = invoke(broker, "echo", {"a": 1, "s": "h\u00e9llo"})
    assert r.status == 200, r
    assert r.json() == {"a": 1, "s": "h\u00e9llo"}
    assert r.headers["x-amz-executed-version"] == "$LATEST"
    assert "x-amz-function-error" not in r.headers
    assert re.fullmatch(r"[0-9a-f-]{36}", r.headers["x-amzn-requestid"])


def test_payload_bytes_are_exact_and_any_content_type(broker):
    raw = b'{"k": "v",\n "n": [1, 2, 3]}'
    for ct in (None, "application/octet-stream", "text/plain"):
        h = {"Content-Type": ct} if ct else {}
        r = invoke(broker, "echo", raw, headers=h)
        assert r.status == 200 and r.body == raw, (ct, r)
    r = invoke(broker, "echo", b"")
    assert r.status == 200 and r.body == b""


def test_standard_lambda_environment(broker, tmp_path):
    r = invoke(broker, "env", {})
    assert r.status == 200, r
    env = r.json()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["_HANDLER"] == "echo.env"
    assert env["LAMBDA_TASK_ROOT"] == str(tmp_path / "code")
    assert env["cwd"] == str(tmp_path / "code")
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "env"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/env"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}",
                        env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert env["AWS_REGION"] and env["TZ"] == "UTC"
    assert env["GREETING"] == "hi there"
    hdr = env.get("headers", env)
    blob = json.dumps(hdr)
    assert r.headers["x-amzn-requestid"] in blob
    assert "arn:aws:lambda:" in blob and ":function:env" in blob


def test_function_error_is_200_with_unhandled(broker):
    r = invoke(broker, "fail", {"x": 1})
    assert r.status == 200
    assert r.headers["x-amz-function-error"] == "Unhandled"
    body = r.json()
    assert body["errorMessage"] and body["errorType"]


def test_crash_fails_only_its_invocation_and_is_replaced(broker):
    r = invoke(broker, "crash", {})
    assert r.status == 200
    assert r.headers["x-amz-function-error"] == "Unhandled"
    body = r.json()
    assert body["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in body["errorMessage"]
    # The crashed instance is replaced on demand: a later call gets a fresh one (and crashes
    # the same way, rather than hanging).
    r2 = invoke(broker, "crash", {})
    assert r2.json()["errorType"] == "Runtime.ExitError"
    assert r.headers["x-amzn-requestid"] != r2.headers["x-amzn-requestid"]


def test_init_error_is_reported_not_hung(broker):
    r = invoke(broker, "initfail", {}, timeout=20)
    assert r.status == 200
    assert r.headers["x-amz-function-error"] == "Unhandled"
    assert r.json()["errorType"] == "Runtime.InitError"
    r = invoke(broker, "exitstart", {}, timeout=20)
    assert r.status == 200
    assert r.json()["errorType"] == "Runtime.ExitError"
    assert "exit status 2" in r.json()["errorMessage"]


def test_timeout_kills_instance_and_names_seconds(broker):
    r = invoke(broker, "sleepy", "5000", timeout=20)
    assert r.status == 200
    assert r.headers["x-amz-function-error"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in r.json()["errorMessage"]
    # A new instance serves the next call.
    r = invoke(broker, "sleepy", "10")
    assert r.status == 200 and r.json() == {"slept_ms": 10}, r
    assert metric(broker, "sluice_timeouts_total", "sleepy") == 1


def test_log_tail_and_log_stream(broker):
    r = invoke(broker, "logger", "marker-123", log_type="Tail")
    assert r.status == 200
    tail = base64.b64decode(r.headers["x-amz-log-result"]).decode()
    assert "marker-123" in tail
    assert "START RequestId: " + r.headers["x-amzn-requestid"] in tail
    assert "END RequestId: " in tail and "REPORT RequestId: " in tail
    assert "Init Duration:" in tail  # the first call is a cold start
    logs = list((broker.state_dir / "logs" / "logger").glob("*.log"))
    assert len(logs) == 1
    text = wait_for(lambda: "REPORT" in logs[0].read_text() and logs[0].read_text(),
                    what="REPORT line in the log stream")
    assert re.search(r"REPORT RequestId: \S+\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                     r"Memory Size: 128 MB\tMax Memory Used: \d+ MB", text), text
    r2 = invoke(broker, "logger", "second", log_type="Tail")
    tail2 = base64.b64decode(r2.headers["x-amz-log-result"]).decode()
    assert "second" in tail2 and "marker-123" not in tail2
    assert "Init Duration" not in tail2  # warm


def test_warm_instances_are_reused(broker):
    for i in range(30):
        r = invoke(broker, "echo", {"i": i})
        assert r.json() == {"i": i}
    assert metric(broker, "sluice_instances", "echo") == 1
    assert metric(broker, "sluice_cold_starts_total", "echo") == 1
    assert metric(broker, "sluice_invocations_total", "echo") == 30


def test_idle_instances_are_reaped(broker):
    assert invoke(broker, "reaped", {}).status == 200
    assert metric(broker, "sluice_instances", "reaped") == 1
    wait_for(lambda: metric(broker, "sluice_instances", "reaped") == 0, timeout=15,
             what="idle instance reaped")
    assert invoke(broker, "reaped", {"again": 1}).json() == {"again": 1}


def test_reserved_concurrency_throttles_sync(broker):
    results = {}

    def slow():
        results["slow"] = invoke(broker, "single", "1500", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: metric(broker, "sluice_concurrent_executions", "single") == 1,
             what="first call in flight")
    r = invoke(broker, "single", "1")
    t.join()
    assert results["slow"].status == 200, results["slow"]
    assert r.status == 429, r
    assert r.headers["x-amzn-errortype"] == "TooManyRequestsException"
    body = r.json()
    assert body["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert body["message"]
    assert metric(broker, "sluice_throttles_total", "single") == 1


def test_client_errors(broker):
    r = invoke(broker, "nope", {})
    assert r.status == 404
    assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "Function not found: arn:aws:lambda:" in r.json()["message"]
    r = invoke(broker, "echo", {}, invocation_type="Sideways")
    assert r.status == 400 and r.headers["x-amzn-errortype"] == "InvalidParameterValueException"
    r = invoke(broker, "echo", {}, log_type="Everything")
    assert r.status == 400
    r = invoke(broker, "bad name!", {})
    assert r.status == 400
    r = invoke(broker, "echo", {}, qualifier="7")
    assert r.status == 404
    r = invoke(broker, "echo", b"x" * (6 * 1024 * 1024 + 1))
    assert r.status == 413 and r.headers["x-amzn-errortype"] == "RequestTooLargeException"
    r = invoke(broker, "echo", b"x" * (1024 * 1024 + 1), invocation_type="Event")
    assert r.status == 413
    r = invoke(broker, "echo", {}, invocation_type="DryRun")
    assert r.status == 204
    r = invoke(broker, "nope", {}, invocation_type="DryRun")
    assert r.status == 404
    r = http("GET", broker.url + "/2015-03-31/functions/echo/invocations")
    assert r.status in (400, 405)
    # ARN forms and $LATEST resolve to the function.
    r = invoke(broker, "arn:aws:lambda:us-east-1:000000000000:function:echo:$LATEST", {"z": 1})
    assert r.status == 200 and r.json() == {"z": 1}
    # Nothing above broke the function.
    assert invoke(broker, "echo", {"ok": True}).json() == {"ok": True}


def test_response_over_6mb_fails(broker):
    r = invoke(broker, "big", str(7 * 1024 * 1024), timeout=30)
    assert r.status == 200
    assert r.headers["x-amz-function-error"] == "Unhandled"
    assert r.json()["errorType"] == "Function.ResponseSizeTooLarge"
    r = invoke(broker, "big", str(5 * 1024 * 1024), timeout=30)
    assert r.status == 200 and len(r.body) == 5 * 1024 * 1024


def test_concurrent_invocations_use_parallel_instances(broker):
    out = []

    def one(i):
        out.append(invoke(broker, "echo", {"i": i}, timeout=30))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.json()["i"] for r in out) == list(range(16))
    assert all(r.status == 200 for r in out)


def test_metrics_text(broker):
    invoke(broker, "echo", {})
    invoke(broker, "fail", {})
    r = http("GET", broker.url + "/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ("sluice_invocations_total", "sluice_errors_total", "sluice_throttles_total",
                 "sluice_duration_milliseconds_bucket", "sluice_concurrent_executions",
                 "sluice_async_queue_depth", "sluice_async_oldest_event_age_seconds"):
        assert "# TYPE " + name.replace("_bucket", "") in text, name
    assert metric(broker, "sluice_errors_total", "fail") == 1
    assert metric(broker, "sluice_errors_total", "echo") == 0


def test_sigterm_drains_in_flight_work(broker):
    results = {}

    def slow():
        results["r"] = invoke(broker, "single", "800", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    wait_for(lambda: metric(broker, "sluice_concurrent_executions", "single") == 1,
             what="call in flight")
    broker.kill(signal.SIGTERM)
    code = broker.wait_exit(timeout=20)
    t.join()
    assert code == 0
    assert results["r"].status == 200 and results["r"].json() == {"slept_ms": 800}


def test_memory_size_is_enforced_or_said_not_to_be(broker_factory):
    b = broker_factory({"Functions": [fn("hog", "echo", "echo.hog", MemorySize=128)]})
    log = b.log_text()
    r = invoke(b, "hog", "16")
    assert r.status == 200 and r.json() == {"touched_mb": 16}, r
    r = invoke(b, "hog", "400", timeout=60)
    if "MemorySize is enforced" in log:
        # Killed by the kernel's OOM killer inside the instance's cgroup.
        assert r.headers.get("x-amz-function-error") == "Unhandled", r
        assert r.json()["errorType"] == "Runtime.ExitError"
        assert "signal" in r.json()["errorMessage"], r.json()
    else:
        assert "MemorySize is not enforced" in log
        assert r.json() == {"touched_mb": 400}
    # Max Memory Used is measured either way (REPORT line in the stream).
    logs = list((b.state_dir / "logs" / "hog").glob("*.log"))
    text = "".join(p.read_text() for p in logs)
    used = [int(x) for x in re.findall(r"Max Memory Used: (\d+) MB", text)]
    assert used and max(used) >= 16, text[-2000:]


def test_provisioned_instances_start_warm(broker_factory):
    b = broker_factory({"Functions": [fn("warm", "echo", "echo.handler",
                                         ProvisionedConcurrency=2)]})
    wait_for(lambda: metric(b, "sluice_idle_instances", "warm") == 2,
             what="two provisioned instances initialised")
    r = invoke(b, "warm", {"w": 1}, log_type="Tail")
    assert r.json() == {"w": 1}
    assert "Init Duration" not in base64.b64decode(r.headers["x-amz-log-result"]).decode()
    assert metric(b, "sluice_cold_starts_total", "warm") == 0
