"""Asynchronous Invoke: durable accept, retries, destinations, and survival of SIGKILL."""

import json
import re
import signal
import threading
from pathlib import Path

import jsonschema
import pytest

from sluice_testlib import function_config, http, invoke, repo_root, runtime_path, wait_for


fn = function_config


def eic(retries=2, base=0.2, on_success=None, on_failure=None, max_age=3600):
    d = {"MaximumRetryAttempts": retries, "MaximumEventAgeInSeconds": max_age,
         "RetryBaseDelaySeconds": base}
    dc = {}
    if on_success:
        dc["OnSuccess"] = {"Destination": on_success}
    if on_failure:
        dc["OnFailure"] = {"Destination": on_failure}
    if dc:
        d["DestinationConfig"] = dc
    return d


SCHEMA = json.loads((repo_root() / "schemas" / "invocation-record.schema.json").read_text())


def jsonl(path):
    """The records of a file:// destination, each checked against the schema."""
    p = Path(path)
    if not p.exists():
        return []
    recs = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    for r in recs:
        jsonschema.validate(r, SCHEMA)
    return recs


def test_async_success_goes_to_on_success(broker_factory, tmp_path):
    ok = tmp_path / "ok.jsonl"
    b = broker_factory({"Functions": [
        fn("echo", "echo", "echo.handler", EventInvokeConfig=eic(on_success="file://%s" % ok)),
    ]})
    r = invoke(b, "echo", {"hello": "world"}, invocation_type="Event")
    assert r.status == 202, r
    assert r.body == b""
    rid = r.headers["x-amzn-requestid"]
    recs = wait_for(lambda: jsonl(ok), what="success record")
    assert len(recs) == 1
    rec = recs[0]
    assert rec["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["timestamp"])
    ctx = rec["requestContext"]
    assert ctx["requestId"] == rid
    assert ctx["condition"] == "Success"
    assert ctx["approximateInvokeCount"] == 1
    assert ctx["functionArn"].endswith(":function:echo:$LATEST")
    assert rec["requestPayload"] == {"hello": "world"}
    assert rec["responseContext"]["statusCode"] == 200
    assert "functionError" not in rec["responseContext"]
    assert rec["responsePayload"] == {"hello": "world"}


def test_async_retries_then_on_failure(broker_factory, tmp_path):
    bad = tmp_path / "bad.jsonl"
    b = broker_factory({"Functions": [
        fn("fail", "fail", "fail.handler", EventInvokeConfig=eic(retries=2, base=0.2,
                                                                 on_failure="file://%s" % bad)),
        fn("fail0", "fail", "fail.handler", EventInvokeConfig=eic(retries=0,
                                                                  on_failure="file://%s" % bad)),
    ]})
    r = invoke(b, "fail", {"n": 1}, invocation_type="Event")
    assert r.status == 202
    r0 = invoke(b, "fail0", {"n": 0}, invocation_type="Event")
    recs = wait_for(lambda: len(jsonl(bad)) == 2 and jsonl(bad), timeout=20,
                    what="two failure records")
    by_id = {x["requestContext"]["requestId"]: x for x in recs}
    rec = by_id[r.headers["x-amzn-requestid"]]
    assert rec["requestContext"]["condition"] == "RetriesExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 3
    assert rec["requestPayload"] == {"n": 1}
    assert rec["responseContext"]["functionError"] == "Unhandled"
    assert rec["responsePayload"]["errorMessage"]
    assert by_id[r0.headers["x-amzn-requestid"]]["requestContext"]["approximateInvokeCount"] == 1
    # The delays grew: the log names retry 1/2 and 2/2.
    log = b.log_text()
    assert "retry 1/2 in 0.2 s" in log and "retry 2/2 in 0.4 s" in log, log[-3000:]


def test_timeouts_and_crashes_are_retried_too(broker_factory, tmp_path):
    bad = tmp_path / "bad.jsonl"
    b = broker_factory({"Functions": [
        fn("crash", "fail", "fail.crash", EventInvokeConfig=eic(retries=1, base=0.1,
                                                                on_failure="file://%s" % bad)),
        fn("slow", "sleep", "sleep.handler", Timeout=1,
           EventInvokeConfig=eic(retries=1, base=0.1, on_failure="file://%s" % bad)),
    ]})
    invoke(b, "crash", {}, invocation_type="Event")
    invoke(b, "slow", "3000", invocation_type="Event")
    recs = wait_for(lambda: len(jsonl(bad)) == 2 and jsonl(bad), timeout=30,
                    what="failure records")
    types = sorted(x["responsePayload"]["errorType"] for x in recs)
    assert types == ["Runtime.ExitError", "Sandbox.Timedout"]
    assert all(x["requestContext"]["approximateInvokeCount"] == 2 for x in recs)


def test_redis_and_function_destinations(broker_factory, redis_server, tmp_path):
    chained = tmp_path / "chained.jsonl"
    stream = "sluice-dlq-%d" % id(tmp_path)
    b = broker_factory({"Functions": [
        fn("fail", "fail", "fail.handler",
           EventInvokeConfig=eic(retries=0, on_failure="%s/%s" % (redis_server.url, stream))),
        fn("first", "echo", "echo.handler",
           EventInvokeConfig=eic(on_success="function:second")),
        fn("second", "echo", "echo.handler",
           EventInvokeConfig=eic(on_success="file://%s" % chained)),
    ]})
    r = invoke(b, "fail", {"to": "redis"}, invocation_type="Event")
    entries = wait_for(lambda: redis_server.cmd("XRANGE", stream, "-", "+"),
                       what="XADD to the redis destination")
    assert len(entries) == 1
    fields = entries[0][1]
    rec = json.loads(fields[fields.index("record") + 1])
    jsonschema.validate(rec, SCHEMA)
    assert rec["requestContext"]["requestId"] == r.headers["x-amzn-requestid"]
    assert rec["requestPayload"] == {"to": "redis"}

    invoke(b, "first", {"chain": 1}, invocation_type="Event")
    recs = wait_for(lambda: jsonl(chained), what="record of the chained function")
    # second received first's success record as its event, and echoed it.
    assert recs[0]["requestPayload"]["requestPayload"] == {"chain": 1}
    assert recs[0]["requestPayload"]["requestContext"]["condition"] == "Success"


def test_reserved_zero_goes_straight_to_failure(broker_factory, tmp_path):
    bad = tmp_path / "bad.jsonl"
    b = broker_factory({"Functions": [
        fn("off", "echo", "echo.handler", ReservedConcurrentExecutions=0,
           EventInvokeConfig=eic(on_failure="file://%s" % bad)),
    ]})
    r = invoke(b, "off", {}, invocation_type="RequestResponse")
    assert r.status == 429
    invoke(b, "off", {"q": 1}, invocation_type="Event")
    recs = wait_for(lambda: jsonl(bad), what="failure record")
    assert recs[0]["requestPayload"] == {"q": 1}
    assert recs[0]["requestContext"]["approximateInvokeCount"] == 0


def test_destination_down_is_retried_not_lost(broker_factory, tmp_path):
    """A redis destination that is not there yet: delivery is retried until it comes up."""
    from sluice_testlib import RedisServer, free_port
    port = free_port()
    b = broker_factory({"Functions": [
        fn("fail", "fail", "fail.handler",
           EventInvokeConfig=eic(retries=0, on_failure="redis://127.0.0.1:%d/late" % port)),
    ]})
    invoke(b, "fail", {"late": True}, invocation_type="Event")
    wait_for(lambda: "destination delivery failed" in b.log_text(), what="a failed delivery")
    srv = RedisServer(tmp_path / "late-redis", port=port)
    srv.start()
    try:
        entries = wait_for(lambda: srv.cmd("XRANGE", "late", "-", "+"), timeout=20,
                           what="delivery once redis is up")
        assert len(entries) == 1
    finally:
        srv.stop()


def test_sigkill_loses_no_accepted_event(broker_factory, tmp_path):
    ok = tmp_path / "ok.jsonl"
    # A function slower than the clients (4 x 10 ms), so a backlog is pending at the kill.
    b = broker_factory({"Functions": [
        fn("echo", "sleep", "sleep.handler", ReservedConcurrentExecutions=4,
           EventInvokeConfig=eic(on_success="file://%s" % ok)),
    ]}, check_exit=False)
    accepted = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(k):
        i = 0
        while not stop.is_set() and i < 125:
            payload = {"ms": 10, "client": k, "i": i}
            try:
                r = invoke(b, "echo", payload, invocation_type="Event", timeout=10)
            except OSError:
                return  # the broker died under us: this event was never acknowledged
            if r.status == 202:
                with lock:
                    accepted[r.headers["x-amzn-requestid"]] = payload
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: len(accepted) >= 300, timeout=60, what="300 accepted events")
    b.kill(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    b.wait_exit(timeout=10)
    n_before = len(jsonl(ok))
    assert n_before < len(accepted), "the kill came too late to test anything"
    b.check_exit = True
    b.start()
    # Send the rest so that 1,000 events were accepted in all.
    k = 0
    while len(accepted) < 1000:
        payload = {"ms": 10, "client": "after", "i": k}
        r = invoke(b, "echo", payload, invocation_type="Event")
        assert r.status == 202
        accepted[r.headers["x-amzn-requestid"]] = payload
        k += 1

    def delivered():
        ids = {x["requestContext"]["requestId"] for x in jsonl(ok)}
        return ids >= set(accepted) and ids

    ids = wait_for(delivered, timeout=120, what="every accepted event delivered")
    recs = jsonl(ok)
    for x in recs:
        rid = x["requestContext"]["requestId"]
        if rid in accepted:
            assert x["requestPayload"] == accepted[rid]
    dups = len(recs) - len(ids)
    print("accepted %d, records %d, duplicates %d" % (len(accepted), len(recs), dups))
    r = http("GET", b.url + "/metrics")
    assert 'sluice_async_queue_depth{function="echo"} 0' in r.text


def test_throttled_async_events_wait_for_capacity(broker_factory, tmp_path):
    ok = tmp_path / "ok.jsonl"
    b = broker_factory({"Functions": [
        fn("one", "sleep", "sleep.handler", ReservedConcurrentExecutions=1,
           EventInvokeConfig=eic(on_success="file://%s" % ok)),
    ]})
    ids = set()
    for i in range(6):
        r = invoke(b, "one", "400", invocation_type="Event")
        assert r.status == 202
        ids.add(r.headers["x-amzn-requestid"])
    depth = http("GET", b.url + "/metrics").text
    assert re.search(r'sluice_async_queue_depth\{function="one"\} [1-6]\b', depth), depth
    recs = wait_for(lambda: len(jsonl(ok)) == 6 and jsonl(ok), timeout=30, what="six successes")
    assert {x["requestContext"]["requestId"] for x in recs} == ids
    assert all(x["requestContext"]["approximateInvokeCount"] == 1 for x in recs)
    # Never more than the one reserved instance, never a throttle error surfaced.
    inst = re.search(r'sluice_instances\{function="one"\} (\d+)',
                     http("GET", b.url + "/metrics").text)
    assert int(inst.group(1)) <= 1


def test_corrupt_store_tail_is_reported_and_skipped(broker_factory, tmp_path):
    ok = tmp_path / "ok.jsonl"
    b = broker_factory({"Functions": [
        fn("slow", "sleep", "sleep.handler", ReservedConcurrentExecutions=0,
           EventInvokeConfig=eic(on_success="file://%s" % ok)),
    ]}, check_exit=False)
    b.stop()
    log = b.state_dir / "store" / "store.log"
    size = log.stat().st_size
    with open(log, "ab") as f:
        f.write(b"\x40\x00\x00\x00garbage-that-is-not-a-frame")
    b.check_exit = True
    b.start()
    assert "corrupt" in b.log_text().lower() or "torn" in b.log_text().lower(), b.log_text()
    assert log.stat().st_size == size
    assert http("GET", b.url + "/health").status == 200


def test_backlog_payloads_leave_memory_and_come_back_intact(broker_factory, tmp_path):
    """Past SLUICE_ASYNC_MEMORY_BYTES, queued payloads are dropped from memory and read back
    from the store at dispatch: every event still runs with its exact payload."""
    ok = tmp_path / "ok.jsonl"
    b = broker_factory({"LogLevel": "DEBUG", "Functions": [
        fn("one", "sleep", "sleep.handler", ReservedConcurrentExecutions=1,
           EventInvokeConfig=eic(on_success="file://%s" % ok)),
    ]}, env={"SLUICE_ASYNC_MEMORY_BYTES": "200000"})
    # Hold the only slot with a slow sync call, so every async event queues behind it.
    held = {}
    t = threading.Thread(target=lambda: held.update(r=invoke(b, "one", "1500", timeout=30)))
    t.start()
    wait_for(lambda: re.search(r'sluice_concurrent_executions\{function="one"\} 1',
                               http("GET", b.url + "/metrics").text), what="slot held")
    sent = {}
    for i in range(30):
        payload = {"ms": 1, "i": i, "pad": chr(97 + i % 26) * 50000}
        r = invoke(b, "one", payload, invocation_type="Event")
        assert r.status == 202
        sent[r.headers["x-amzn-requestid"]] = payload
    t.join()
    assert held["r"].status == 200
    recs = wait_for(lambda: len(jsonl(ok)) == 30 and jsonl(ok), timeout=60, what="30 records")
    for x in recs:
        assert x["requestPayload"] == sent[x["requestContext"]["requestId"]]
    assert "back from the store" in b.log_text()


# --- a writer of the store's format (schemas/store-record.schema.json), to plant old events ---

def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _mp(v):
    """Just enough msgpack: dict, str, bytes, non-negative int."""
    import struct
    if isinstance(v, dict):
        out = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xde" + struct.pack(">H", len(v))
        for k, x in v.items():
            out += _mp(k) + _mp(x)
        return out
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, bytes):
        return b"\xc6" + struct.pack(">I", len(v)) + v
    if isinstance(v, int) and v >= 0:
        return b"\xcf" + struct.pack(">Q", v)
    raise TypeError(v)


def test_stored_event_past_its_age_goes_to_on_failure(broker_factory, tmp_path):
    import struct
    import time
    import uuid as uuidlib
    bad = tmp_path / "bad.jsonl"
    b = broker_factory({"Functions": [
        fn("echo", "echo", "echo.handler",
           EventInvokeConfig=eic(max_age=60, on_failure="file://%s" % bad)),
    ]})
    b.stop()
    rid = str(uuidlib.uuid4())
    value = _mp({"type": "async", "fn": "echo", "payload": b'{"old": true}',
                 "accepted_ms": int(time.time() * 1000) - 120000, "attempts": 0,
                 "due_ms": 0, "phase": 0})
    body = _mp({"op": "put", "seq": 1000000, "k": "async/" + rid, "v": value})
    with open(b.state_dir / "store" / "store.log", "ab") as f:
        f.write(struct.pack("<II", len(body), _crc32c(body)) + body)
    b.start()
    recs = wait_for(lambda: jsonl(bad), what="the expired event's failure record")
    rec = recs[0]
    assert rec["requestContext"]["requestId"] == rid
    assert rec["requestContext"]["condition"] == "EventAgeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    assert rec["requestPayload"] == {"old": True}
    assert "recovered 1 stored async events" in b.log_text()
