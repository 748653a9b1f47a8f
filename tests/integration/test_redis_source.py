"""Redis Streams as a queue with SQS semantics, against a real redis-server."""

import hashlib
import json
import re
import signal
import uuid
from pathlib import Path

import jsonschema
import pytest

from sluice_testlib import (RedisServer, free_port, function_config, http, repo_root,
                            wait_for)

SQS_SCHEMA_PATH = repo_root() / "schemas" / "sqs-event.schema.json"


def recorder(name, record_file, **extra):
    d = {
        "FunctionName": name,
        "Command": ["/usr/bin/python3",
                    str(repo_root() / "tests" / "integration" / "runtimes" / "recorder.py")],
        "Handler": "recorder.handler",
        "Timeout": 10,
        "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
    }
    d.update(extra)
    return d


def events(path):
    p = Path(path)
    if not p.exists():
        return []
    out = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    if SQS_SCHEMA_PATH.exists():
        schema = json.loads(SQS_SCHEMA_PATH.read_text())
        for e in out:
            jsonschema.validate(e, schema)
    return out


def records(path):
    return [r for e in events(path) for r in e["Records"]]


def metric(broker, name, **labels):
    text = http("GET", broker.url + "/metrics").text
    total = None
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all('%s="%s"' % kv in line for kv in labels.items()):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def stream_name():
    return "q-" + uuid.uuid4().hex[:10]


def mapping(redis_url, stream, fn="worker", query="", **extra):
    d = {"FunctionName": fn,
         "EventSourceArn": "%s/%s%s" % (redis_url, stream, ("?" + query) if query else "")}
    d.update(extra)
    return d


def pending(redis, stream, group=None):
    groups = redis.cmd("XINFO", "GROUPS", stream)
    if not groups:
        return None
    g = dict(zip(groups[0][::2], groups[0][1::2]))
    return int(g["pending"])


def test_messages_are_delivered_acknowledged_and_shaped_like_sqs(broker_factory, redis_server,
                                                                 tmp_path):
    rec = tmp_path / "events.jsonl"
    q = stream_name()
    ids = [redis_server.cmd("XADD", q, "*", "body", "hello %d" % i, "kind", "greeting")
           for i in range(25)]
    ids.append(redis_server.cmd("XADD", q, "*", "a", "1", "b", "two"))
    b = broker_factory({
        "Functions": [recorder("worker", rec)],
        "EventSourceMappings": [mapping(redis_server.url, q, BatchSize=10)],
    })
    recs = wait_for(lambda: len(records(rec)) >= 26 and records(rec), timeout=30,
                    what="26 records delivered")
    assert sorted(r["messageId"] for r in recs) == sorted(ids)
    assert all(len(e["Records"]) <= 10 for e in events(rec))
    first = next(r for r in recs if r["messageId"] == ids[0])
    assert first["body"] == "hello 0"
    assert first["eventSource"] == "aws:sqs"
    assert first["eventSourceARN"] == "%s/%s" % (redis_server.url, q)
    assert first["attributes"]["ApproximateReceiveCount"] == "1"
    assert first["attributes"]["SentTimestamp"] == ids[0].split("-")[0]
    assert first["messageAttributes"]["kind"]["stringValue"] == "greeting"
    assert first["messageAttributes"]["kind"]["dataType"] == "String"
    assert first["md5OfBody"] == hashlib.md5(b"hello 0").hexdigest()
    bodyless = next(r for r in recs if r["messageId"] == ids[-1])
    assert json.loads(bodyless["body"]) == {"a": "1", "b": "two"}
    wait_for(lambda: pending(redis_server, q) == 0, what="everything acknowledged")
    assert metric(b, "sluice_redis_acknowledged_total") == 26
    # GetEventSourceMapping / ListEventSourceMappings (read-only for now), Lambda's shape.
    listed = http("GET", b.url + "/2015-03-31/event-source-mappings/").json()
    assert len(listed["EventSourceMappings"]) == 1
    esm = listed["EventSourceMappings"][0]
    assert re.fullmatch(r"[0-9a-f-]{36}", esm["UUID"])
    assert esm["FunctionArn"].endswith(":function:worker")
    assert esm["EventSourceArn"] == "%s/%s" % (redis_server.url, q)
    assert esm["BatchSize"] == 10 and esm["State"] == "Enabled"
    assert esm["LastProcessingResult"] == "OK"
    assert isinstance(esm["LastModified"], float)
    one = http("GET", b.url + "/2015-03-31/event-source-mappings/" + esm["UUID"])
    assert one.status == 200 and one.json()["UUID"] == esm["UUID"]
    missing = http("GET", b.url + "/2015-03-31/event-source-mappings/" + "0" * 36)
    assert missing.status == 404
    assert missing.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    # Nothing is delivered twice when all succeed.
    assert len(records(rec)) == 26


def test_partial_failure_visibility_timeout_and_redrive(broker_factory, redis_server, tmp_path):
    rec = tmp_path / "events.jsonl"
    q, dlq = stream_name(), stream_name()
    ok_ids = [redis_server.cmd("XADD", q, "*", "body", "fine %d" % i) for i in range(4)]
    bad = redis_server.cmd("XADD", q, "*", "body", "please fail-me", "tag", "x")
    broker_factory({
        "Functions": [recorder("worker", rec)],
        "EventSourceMappings": [mapping(
            redis_server.url, q,
            query="VisibilityTimeout=1&maxReceiveCount=2&deadLetterTarget=%s" % dlq,
            BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])],
    })
    dead = wait_for(lambda: redis_server.cmd("XRANGE", dlq, "-", "+"), timeout=30,
                    what="the failing message in the dead-letter stream")
    assert len(dead) == 1
    fields = dict(zip(dead[0][1][::2], dead[0][1][1::2]))
    assert fields["body"] == "please fail-me" and fields["tag"] == "x"
    assert fields["sluice-source-id"] == bad
    assert fields["sluice-source-stream"] == q
    assert fields["sluice-receive-count"] == "2"
    assert "batchItemFailures" in fields["sluice-last-error"]
    # The failing message was received twice (counts 1 and 2), the others once.
    got = records(rec)
    bad_counts = sorted(int(r["attributes"]["ApproximateReceiveCount"])
                        for r in got if r["messageId"] == bad)
    assert bad_counts == [1, 2]
    for i in ok_ids:
        assert [r["messageId"] for r in got].count(i) == 1
    # Never in both places: acknowledged in the source once moved.
    wait_for(lambda: pending(redis_server, q) == 0, what="source acknowledged")


def test_function_error_returns_whole_batch_after_visibility_timeout(broker_factory,
                                                                     redis_server, tmp_path):
    rec = tmp_path / "events.jsonl"
    q = stream_name()
    b = broker_factory({
        "Functions": [recorder("worker", rec)],
        "EventSourceMappings": [mapping(redis_server.url, q, query="VisibilityTimeout=1",
                                        BatchSize=5)],
    })
    ids = [redis_server.cmd("XADD", q, "*", "body", "x%d fail-all" % i) for i in range(3)]
    wait_for(lambda: len(records(rec)) >= 6, timeout=30, what="a second delivery")
    counts = {}
    for r in records(rec):
        counts.setdefault(r["messageId"], []).append(int(r["attributes"]["ApproximateReceiveCount"]))
    for i in ids:
        assert counts[i][:2] == [1, 2], counts
    assert metric(b, "sluice_esm_batches_failed_total") >= 2


def test_invalid_partial_response_fails_the_whole_batch(broker_factory, redis_server, tmp_path):
    rec = tmp_path / "events.jsonl"
    q = stream_name()
    broker_factory({
        "Functions": [recorder("worker", rec)],
        "EventSourceMappings": [mapping(redis_server.url, q, query="VisibilityTimeout=1",
                                        FunctionResponseTypes=["ReportBatchItemFailures"])],
    })
    a = redis_server.cmd("XADD", q, "*", "body", "bad-partial")
    wait_for(lambda: [r["messageId"] for r in records(rec)].count(a) >= 2, timeout=30,
             what="redelivery after an invalid partial response")


def test_sigkill_mid_batch_loses_nothing(broker_factory, redis_server, tmp_path):
    rec = tmp_path / "events.jsonl"
    q = stream_name()
    cfg = {
        "Functions": [recorder("worker", rec)],
        "EventSourceMappings": [mapping(redis_server.url, q, query="VisibilityTimeout=2",
                                        BatchSize=5)],
    }
    ids = [redis_server.cmd("XADD", q, "*", "body", "m%d sleep-ms:100" % i) for i in range(40)]
    b = broker_factory(cfg, check_exit=False)
    wait_for(lambda: len(records(rec)) >= 10, timeout=30, what="some batches in flight")
    b.kill(signal.SIGKILL)
    b.wait_exit(timeout=10)
    b.check_exit = True
    b.start()
    wait_for(lambda: set(r["messageId"] for r in records(rec)) >= set(ids), timeout=60,
             what="every message processed at least once")
    wait_for(lambda: pending(redis_server, q) == 0, timeout=30, what="all acknowledged")


def test_two_brokers_share_the_group(broker_factory, redis_server, tmp_path):
    q = stream_name()
    recs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    group = "shared-" + q
    brokers = [broker_factory({
        "Functions": [recorder("worker", r)],
        "EventSourceMappings": [mapping(redis_server.url, q,
                                        query="ConsumerGroup=%s&VisibilityTimeout=30" % group,
                                        BatchSize=2)],
    }) for r in recs]
    ids = [redis_server.cmd("XADD", q, "*", "body", "w%d sleep-ms:20" % i) for i in range(60)]
    wait_for(lambda: len(records(recs[0])) + len(records(recs[1])) >= 60, timeout=60,
             what="60 messages processed")
    seen = [r["messageId"] for p in recs for r in records(p)]
    assert sorted(seen) == sorted(ids)  # each exactly once
    assert records(recs[0]) and records(recs[1]), "both brokers took work"
    assert brokers[0].running() and brokers[1].running()


def test_redis_going_away_and_coming_back(broker_factory, tmp_path):
    port = free_port()
    srv = RedisServer(tmp_path / "r", port=port)
    srv.start()
    rec = tmp_path / "events.jsonl"
    q = stream_name()
    b = broker_factory({
        "Functions": [recorder("worker", rec)],
        "EventSourceMappings": [mapping(srv.url, q)],
    })
    srv.cmd("XADD", q, "*", "body", "before")
    wait_for(lambda: len(records(rec)) == 1, what="first message")
    srv.stop()
    wait_for(lambda: metric(b, "sluice_redis_connected") == 0, what="connection loss noticed")
    listed = http("GET", b.url + "/2015-03-31/event-source-mappings?FunctionName=worker").json()
    esm = listed["EventSourceMappings"][0]
    assert esm["LastProcessingResult"].startswith("PROBLEM: Source unavailable"), esm
    srv2 = RedisServer(tmp_path / "r2", port=port)
    srv2.start()
    try:
        srv2.cmd("XADD", q, "*", "body", "after")
        wait_for(lambda: [r["body"] for r in records(rec)] == ["before", "after"], timeout=30,
                 what="the mapping resumed by itself")
        log = b.log_text()
        assert log.count("retrying with backoff") == 1, log
        assert "connected again" in log
        got = http("GET", b.url + "/2015-03-31/event-source-mappings/" + esm["UUID"]).json()
        assert got["LastProcessingResult"] == "OK", got
    finally:
        srv2.stop()


def test_back_pressure_respects_reserved_concurrency(broker_factory, redis_server, tmp_path):
    rec = tmp_path / "events.jsonl"
    q = stream_name()
    b = broker_factory({
        "Functions": [recorder("worker", rec, ReservedConcurrentExecutions=2)],
        "EventSourceMappings": [mapping(redis_server.url, q, BatchSize=1,
                                        ScalingConfig={"MaximumConcurrency": 5})],
    })
    for i in range(20):
        redis_server.cmd("XADD", q, "*", "body", "p%d sleep-ms:50" % i)
    wait_for(lambda: len(records(rec)) == 20, timeout=60, what="20 processed")
    assert metric(b, "sluice_throttles_total", function="worker") in (0, None)
    assert metric(b, "sluice_instances", function="worker") <= 2


def test_sigterm_finishes_and_acknowledges_batches_in_flight(broker_factory, redis_server,
                                                            tmp_path):
    rec = tmp_path / "events.jsonl"
    q = stream_name()
    b = broker_factory({
        "Functions": [recorder("worker", rec)],
        "EventSourceMappings": [mapping(redis_server.url, q, BatchSize=3)],
    })
    ids = [redis_server.cmd("XADD", q, "*", "body", "slow sleep-ms:700") for _ in range(3)]
    wait_for(lambda: len(records(rec)) == 3, what="the batch in flight")
    b.kill(signal.SIGTERM)
    assert b.wait_exit(timeout=30) == 0
    # The batch finished and was acknowledged before the broker exited.
    assert pending(redis_server, q) == 0
    assert sorted(r["messageId"] for r in records(rec)) == sorted(ids)
