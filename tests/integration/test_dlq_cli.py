"""`sluice dlq list|replay` against a real redis-server and, for --to-function, a real broker.

Dead letters are made the way production makes them: a mapping whose function always fails
(fail-runtime, fail.handler) with VisibilityTimeout=1&maxReceiveCount=1&deadLetterTarget=...
Tests of the CLI's own edges (skips, passwords, databases) write dead letters directly with
the fields the redrive script adds.
"""

import json
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import jsonschema

from sluice_testlib import (RedisServer, free_port, function_config, http, repo_root,
                            sluice_bin, timeout_scale, wait_for)

SQS_SCHEMA = json.loads((repo_root() / "schemas" / "sqs-event.schema.json").read_text())

# The messages the failing mapping dead-letters: with a body and attributes, without a body,
# UTF-8 text, and a value that is not UTF-8 (it must come back byte for byte).
MESSAGES = [
    [b"body", b'{"order": 1}', b"tag", b"first"],
    [b"a", b"1", b"b", b"two"],
    [b"body", "caf\u00e9 \u2713".encode(), b"kind", b"utf8"],
    [b"body", b"raw", b"blob", b"\xff\xfe\x00bin"],
]


def sluice(*args, timeout=120):
    return subprocess.run([str(sluice_bin()), *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=timeout * timeout_scale())


def stream_name():
    return "dlq-" + uuid.uuid4().hex[:10]


def metric(broker, name, **labels):
    text = http("GET", broker.url + "/metrics").text
    total = None
    for line in text.splitlines():
        if line.startswith(name + "{") and all('%s="%s"' % kv in line for kv in labels.items()):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def entries(redis, stream):
    """[(id, [name, value, ...])] with bytes, oldest first."""
    return [(e[0].decode(), e[1]) for e in redis.cmd_raw("XRANGE", stream, "-", "+") or []]


def json_lines(text):
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def recorder(name, record_file):
    return {
        "FunctionName": name,
        "Command": ["/usr/bin/python3",
                    str(repo_root() / "tests" / "integration" / "runtimes" / "recorder.py")],
        "Handler": "recorder.handler",
        "Timeout": 10,
        "Environment": {"Variables": {"RECORD_FILE": str(record_file)}},
    }


def dead_letters_from_a_failing_mapping(broker_factory, redis_server, functions=()):
    """Runs a broker whose mapping dead-letters MESSAGES; returns (broker, source, dlq,
    {source id: original fields})."""
    q, dlq = stream_name(), stream_name()
    for fields in MESSAGES:
        redis_server.cmd_raw("XADD", q, "*", *fields)
    originals = dict(entries(redis_server, q))
    b = broker_factory({
        "Functions": [function_config("worker", "fail", "fail.handler")] + list(functions),
        "EventSourceMappings": [{
            "FunctionName": "worker",
            "EventSourceArn": "%s/%s?VisibilityTimeout=1&maxReceiveCount=1&deadLetterTarget=%s"
                              % (redis_server.url, q, dlq),
            "BatchSize": 10,
        }],
    })
    wait_for(lambda: redis_server.cmd("XLEN", dlq) == len(MESSAGES), timeout=30,
             what="every message in the dead-letter stream")
    return b, q, dlq, originals


def synthetic_dead_letter(redis, dlq, source, fields, source_id="1700000000000-0"):
    return redis.cmd("XADD", dlq, "*", *fields, "sluice-source-stream", source,
                     "sluice-source-id", source_id, "sluice-receive-count", "3",
                     "sluice-last-error", "Unhandled: synthetic")


# ---------------------------------------------------------------------------------------------


def test_list_dry_run_and_replay_to_source(broker_factory, redis_server):
    b, q, dlq, originals = dead_letters_from_a_failing_mapping(broker_factory, redis_server)
    # Stopped, so nothing consumes the source again while we look at it.
    assert b.stop() == 0
    uri = "%s/%s" % (redis_server.url, dlq)
    dead = entries(redis_server, dlq)

    r = sluice("dlq", "list", uri, "--json")
    assert r.returncode == 0, r.stderr
    listed = json_lines(r.stdout)
    assert [x["id"] for x in listed] == [d[0] for d in dead]  # oldest first
    assert sorted(x["sourceId"] for x in listed) == sorted(originals)
    for x in listed:
        assert x["sourceStream"] == q
        assert x["receiveCount"] == 1
        assert "always fails" in x["lastError"], x
        raw = originals[x["sourceId"]]
        want = {raw[i].decode(): raw[i + 1].decode("utf-8", errors="replace")
                for i in range(0, len(raw), 2)}
        assert x["fields"] == want  # original fields only, no sluice-*
    r = sluice("dlq", "list", uri, "--json", "--count", "1")
    assert r.returncode == 0 and [x["id"] for x in json_lines(r.stdout)] == [dead[0][0]]

    r = sluice("dlq", "list", uri)
    assert r.returncode == 0, r.stderr
    for d in dead:
        assert d[0] in r.stdout
    assert "always fails" in r.stdout and "tag=\"first\"" in r.stdout
    assert "%d dead letters in %s" % (len(MESSAGES), dlq) in r.stdout

    before = entries(redis_server, q)
    r = sluice("dlq", "replay", uri, "--to-source", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "nothing changed" in r.stdout and r.stdout.count("would replay") == len(MESSAGES) + 1
    assert entries(redis_server, dlq) == dead
    assert entries(redis_server, q) == before

    r = sluice("dlq", "replay", uri, "--to-source")
    assert r.returncode == 0, r.stderr
    assert "replayed %d of %d" % (len(MESSAGES), len(MESSAGES)) in r.stdout
    assert redis_server.cmd("XLEN", dlq) == 0
    after = entries(redis_server, q)
    assert after[:len(before)] == before
    replayed = [fields for _, fields in after[len(before):]]
    # Exactly the original fields, byte for byte and in order (the binary value included).
    assert sorted(replayed) == sorted(originals.values())
    assert [fields for _, fields in after[len(before):]] == \
        [originals[x["sourceId"]] for x in listed]  # in dead-letter order

    r = sluice("dlq", "replay", uri, "--to-source")
    assert r.returncode == 0 and "nothing to replay" in r.stdout


def test_replay_to_function_through_a_running_broker(broker_factory, redis_server, tmp_path):
    rec = tmp_path / "events.jsonl"
    b, q, dlq, originals = dead_letters_from_a_failing_mapping(
        broker_factory, redis_server,
        functions=[function_config("echo", "echo", "echo.handler"), recorder("rec", rec)])
    uri = "%s/%s" % (redis_server.url, dlq)
    dead = entries(redis_server, dlq)

    # A function that still fails: nothing leaves the dead-letter stream, and it says why.
    r = sluice("dlq", "replay", uri, "--to-function", "worker", "--endpoint", b.url)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "always fails" in r.stderr
    assert "0 of %d" % len(MESSAGES) in r.stdout and "%d failed" % len(MESSAGES) in r.stdout
    assert entries(redis_server, dlq) == dead

    # A dry run invokes nothing.
    r = sluice("dlq", "replay", uri, "--to-function", "rec", "--endpoint", b.url, "--dry-run")
    assert r.returncode == 0 and "nothing changed" in r.stdout, r.stdout + r.stderr
    assert entries(redis_server, dlq) == dead and not rec.exists()

    # The oldest one into the recorder: the event is the mapping's SQS shape.
    r = sluice("dlq", "replay", uri, "--to-function", "rec", "--endpoint", b.url, "--count", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert entries(redis_server, dlq) == dead[1:]
    events = [json.loads(x) for x in rec.read_text().splitlines()]
    assert len(events) == 1
    jsonschema.validate(events[0], SQS_SCHEMA)
    (record,) = events[0]["Records"]
    first = dict(zip(dead[0][1][::2], dead[0][1][1::2]))
    assert record["messageId"] == first[b"sluice-source-id"].decode()
    raw = originals[record["messageId"]]
    fields = dict(zip(raw[::2], raw[1::2]))
    if b"body" in fields:
        assert record["body"] == fields[b"body"].decode("utf-8", errors="replace")
    else:
        assert json.loads(record["body"]) == {k.decode(): v.decode() for k, v in fields.items()}
    assert record["attributes"]["ApproximateReceiveCount"] == "2"  # 1 before, plus this one
    assert record["eventSourceARN"] == uri

    # The rest into echo: the DLQ empties, echo's invocations grow by exactly that many.
    before = metric(b, "sluice_invocations_total", function="echo") or 0
    r = sluice("dlq", "replay", uri, "--to-function", "echo", "--endpoint", b.url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replayed %d of %d" % (len(MESSAGES) - 1, len(MESSAGES) - 1) in r.stdout
    assert redis_server.cmd("XLEN", dlq) == 0
    assert metric(b, "sluice_invocations_total", function="echo") == before + len(MESSAGES) - 1


def test_replay_to_function_async_and_broker_problems(broker_factory, redis_server):
    b = broker_factory({"Functions": [function_config("echo", "echo", "echo.handler")]})
    dlq = stream_name()
    for i in range(5):
        synthetic_dead_letter(redis_server, dlq, "orders", ["body", "async %d" % i])
    uri = "%s/%s" % (redis_server.url, dlq)

    # An unknown function: the first failure stops the run; nothing is deleted.
    r = sluice("dlq", "replay", uri, "--to-function", "nope", "--endpoint", b.url)
    assert r.returncode == 1 and "ResourceNotFoundException" in r.stderr, r.stderr
    assert "1 failed" in r.stdout and "stopped early" in r.stdout
    assert redis_server.cmd("XLEN", dlq) == 5
    # No broker there: one clear message, nothing deleted.
    r = sluice("dlq", "replay", uri, "--to-function", "echo",
               "--endpoint", "http://127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and "cannot reach the broker" in r.stderr, r.stderr
    assert redis_server.cmd("XLEN", dlq) == 5

    before = metric(b, "sluice_invocations_total", function="echo") or 0
    r = sluice("dlq", "replay", uri, "--to-function", "echo", "--endpoint", b.url, "--async")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replayed 5 of 5" in r.stdout and "(async)" in r.stdout
    assert redis_server.cmd("XLEN", dlq) == 0
    wait_for(lambda: metric(b, "sluice_invocations_total", function="echo") == before + 5,
             timeout=30, what="the 5 async events invoked")


def test_skips_to_stream_databases_and_wrong_types(redis_server):
    dlq, src, other = stream_name(), stream_name(), stream_name()
    uri = "%s/%s" % (redis_server.url, dlq)
    foreign = redis_server.cmd("XADD", dlq, "*", "body", "no provenance")
    synthetic_dead_letter(redis_server, dlq, src, ["body", "mine", "sluice-extra", "x"])

    r = sluice("dlq", "replay", uri, "--to-source")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "skipping %s" % foreign in r.stderr and "--to-stream" in r.stderr
    assert "replayed 1 of 2" in r.stdout and "1 skipped" in r.stdout
    assert [f for _, f in entries(redis_server, src)] == [[b"body", b"mine"]]  # sluice-* gone
    assert [i for i, _ in entries(redis_server, dlq)] == [foreign]

    r = sluice("dlq", "replay", uri, "--to-stream", other)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [f for _, f in entries(redis_server, other)] == [[b"body", b"no provenance"]]
    assert redis_server.cmd("XLEN", dlq) == 0

    # A database other than 0.
    with redis_server.client() as c:
        c.cmd("SELECT", "3")
        c.cmd("XADD", dlq, "*", "body", "in db 3", "sluice-source-stream", src)
    r = sluice("dlq", "list", "%s/3/%s" % (redis_server.url, dlq), "--json")
    assert r.returncode == 0 and json_lines(r.stdout)[0]["fields"] == {"body": "in db 3"}
    r = sluice("dlq", "list", uri)
    assert r.returncode == 0 and "no dead letters" in r.stdout

    # A key that is not a stream.
    key = stream_name()
    redis_server.cmd("SET", key, "x")
    r = sluice("dlq", "list", "%s/%s" % (redis_server.url, key))
    assert r.returncode == 1 and "WRONGTYPE" in r.stderr and "not a stream" in r.stderr


def test_many_dead_letters_page_through_in_order(redis_server):
    dlq, src = stream_name(), stream_name()
    uri = "%s/%s" % (redis_server.url, dlq)
    for i in range(250):
        redis_server.cmd("XADD", dlq, "*", "body", "m%d" % i, "sluice-source-stream", src)
    r = sluice("dlq", "list", uri, "--json", "--count", "150")
    assert r.returncode == 0, r.stderr
    assert [x["fields"]["body"] for x in json_lines(r.stdout)] == ["m%d" % i for i in range(150)]
    r = sluice("dlq", "replay", uri, "--to-source", "--count", "120")
    assert r.returncode == 0 and "replayed 120 of 120" in r.stdout, r.stdout + r.stderr
    assert redis_server.cmd("XLEN", dlq) == 130
    r = sluice("dlq", "replay", uri, "--to-source")
    assert r.returncode == 0 and "replayed 130 of 130" in r.stdout, r.stdout + r.stderr
    assert [f for _, f in entries(redis_server, src)] == \
        [[b"body", b"m%d" % i] for i in range(250)]  # oldest first, the dead-letter order


def test_passwords_and_acl_users(tmp_path):
    srv = RedisServer(tmp_path / "r").start()
    try:
        password = "p@ss:w/rd"
        srv.cmd("ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "+@all")
        srv.cmd("CONFIG", "SET", "requirepass", password)
        srv._client = None  # the shared connection predates the password
        with srv.client() as c:
            c.cmd("AUTH", password)
            c.cmd("XADD", "dq", "*", "body", "secret order", "sluice-source-stream", "src")
        enc = urllib.parse.quote(password, safe="")
        base = "redis://%%s@127.0.0.1:%d/dq" % srv.port

        r = sluice("dlq", "list", base % (":" + enc), "--json")
        assert r.returncode == 0, r.stderr
        assert json_lines(r.stdout)[0]["fields"] == {"body": "secret order"}
        r = sluice("dlq", "list", base % "alice:s3cret", "--json")
        assert r.returncode == 0, r.stderr

        r = sluice("dlq", "list", "redis://127.0.0.1:%d/dq" % srv.port)
        assert r.returncode == 1 and "NOAUTH" in r.stderr and "PASSWORD@" in r.stderr
        r = sluice("dlq", "replay", base % ":wrong-one", "--to-source")
        assert r.returncode == 1 and "AUTH" in r.stderr
        assert "wrong-one" not in r.stdout + r.stderr

        r = sluice("dlq", "replay", base % (":" + enc), "--to-source")
        assert r.returncode == 0, r.stdout + r.stderr
        with srv.client() as c:
            c.cmd("AUTH", password)
            assert c.cmd("XLEN", "src") == 1 and c.cmd("XLEN", "dq") == 0
    finally:
        srv.stop()


def test_help_usage_and_unreachable(redis_server):
    r = sluice("--help")
    assert r.returncode == 0 and "dlq list" in r.stdout and "dlq replay" in r.stdout
    r = sluice("dlq", "--help")
    assert r.returncode == 0
    for word in ("list", "replay", "--to-source", "--to-stream", "--to-function", "--endpoint",
                 "--async", "--count", "--dry-run", "--json", "sluice-source-stream",
                 "Exit status"):
        assert word in r.stdout, word
    assert sluice("dlq", "replay", "--help").returncode == 0

    uri = "%s/%s" % (redis_server.url, stream_name())
    usage = [
        ("dlq",),
        ("dlq", "frobnicate", uri),
        ("dlq", "list"),
        ("dlq", "list", uri, "extra"),
        ("dlq", "list", uri, "--to-source"),
        ("dlq", "list", uri, "--count", "0"),
        ("dlq", "list", uri, "--bogus"),
        ("dlq", "replay", uri),
        ("dlq", "replay", uri, "--to-source", "--to-function", "echo"),
        ("dlq", "replay", uri, "--to-source", "--async"),
        ("dlq", "replay", uri, "--to-function", "bad name!"),
        ("dlq", "replay", uri, "--to-function", "echo", "--endpoint", "https://x:1"),
        ("dlq", "replay", uri, "--to-source", "--json"),
        ("dlq", "list", "redis://127.0.0.1:99999/x"),
        ("dlq", "list", "http://127.0.0.1/x"),
        ("dlq", "list", "redis://127.0.0.1:6379"),
        ("dlq", "list", uri + "?VisibilityTimeout=1"),
    ]
    for args in usage:
        r = sluice(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip(), args
    r = sluice("dlq", "list", "redis://127.0.0.1:99999/x")
    assert "bad URI" in r.stderr and "port" in r.stderr

    r = sluice("dlq", "list", "redis://127.0.0.1:%d/x" % free_port())
    assert r.returncode == 1 and "cannot connect to redis" in r.stderr, r.stderr
    r = sluice("dlq", "replay", uri, "--to-source")
    assert r.returncode == 0 and "nothing to replay" in r.stdout, r.stdout + r.stderr
    r = sluice("dlq", "list", uri, "--json")
    assert r.returncode == 0 and r.stdout == ""
