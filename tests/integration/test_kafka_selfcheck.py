"""Self-check of the Kafka test machinery: the kafka_server fixture starts a real single-node
KRaft Apache Kafka broker (deploy/kafka/start-kafka.sh, jars from Maven Central via
deploy/kafka/fetch-jars.sh) and kafka_admin (librdkafka) talks to it. If this file fails, every
Kafka test would fail for the same reason; the failure message says which piece broke."""

import subprocess

import pytest

from kafka_server import metadata_ready, unique_topic
from sluice_testlib import free_port, repo_root, wait_for


def test_broker_serves_metadata(kafka_server):
    assert kafka_server.running()
    assert kafka_server.bootstrap == "127.0.0.1:%d" % kafka_server.port
    assert metadata_ready(kafka_server.host, kafka_server.port)
    # The controller listener is private and distinct.
    assert kafka_server.controller_port != kafka_server.port
    print("kafka start to ready: %.2f s" % kafka_server.start_seconds)


def test_start_script_check_probe(kafka_server):
    """The probe developers' start-up uses (start-kafka.sh --check) agrees with ours."""
    script = repo_root() / "deploy" / "kafka" / "start-kafka.sh"
    r = subprocess.run(["bash", str(script), "--check", kafka_server.bootstrap],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # A port nobody listens on.
    r = subprocess.run(["bash", str(script), "--check", "127.0.0.1:%d" % free_port()],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1


def test_topic_with_three_partitions_round_trips_records(kafka_server):
    topic = unique_topic("selfcheck")
    assert kafka_server.create_topic(topic, partitions=3) == {"topic": topic, "partitions": 3}
    desc = kafka_server.describe_topic(topic)
    assert [p["partition"] for p in desc["partitions"]] == [0, 1, 2]
    assert all(p["leader"] >= 0 for p in desc["partitions"])

    records = []
    for p in range(3):
        for i in range(4):
            records.append({"key": "k%d-%d" % (p, i), "value": "v%d-%d" % (p, i), "partition": p})
    # Bytes that are not text, a UTF-8 value, headers (one without a value), no key, no value.
    records.append({"key": b"\x00\xff\x80bin", "value": "h\u00e9llo \u2603".encode("utf-8"),
                    "partition": 1, "headers": [("trace", b"\x01\x02"), ("empty", None)]})
    records.append({"key": None, "value": "keyless", "partition": 2})
    records.append({"key": "tombstone", "value": None, "partition": 0})
    acks = kafka_server.produce(topic, records)
    assert [p for p, _ in acks] == [r["partition"] for r in records]
    # Offsets are dense per partition, starting at 0, in the order produced.
    for p in range(3):
        assert [o for q, o in acks if q == p] == list(range(sum(1 for q, _ in acks if q == p)))

    got = kafka_server.consume(topic)  # everything up to the current end
    assert len(got) == len(records)
    by_partition = {p: [r for r in got if r.partition == p] for p in range(3)}
    for p in range(3):
        sent = [r for r in records if r["partition"] == p]
        recv = by_partition[p]
        assert [r.offset for r in recv] == list(range(len(sent)))
        for s, r in zip(sent, recv):
            want_key = s["key"].encode() if isinstance(s["key"], str) else s["key"]
            want_value = s["value"].encode() if isinstance(s["value"], str) else s["value"]
            assert (r.key, r.value) == (want_key, want_value)
            assert r.timestamp > 0
    special = [r for r in got if r.key == b"\x00\xff\x80bin"]
    assert len(special) == 1
    assert special[0].value == "h\u00e9llo \u2603".encode("utf-8")
    assert special[0].headers == [("trace", b"\x01\x02"), ("empty", None)]

    assert kafka_server.offsets(topic) == {0: (0, 5), 1: (0, 5), 2: (0, 5)}
    # One partition, from an offset, a bounded count.
    part1 = kafka_server.consume(topic, count=2, partition=1, from_offset=3)
    assert [(r.partition, r.offset) for r in part1] == [(1, 3), (1, 4)]


def test_bulk_produce_and_count(kafka_server):
    topic = unique_topic("bulk")
    kafka_server.create_topic(topic, partitions=3)
    res = kafka_server.produce_n(topic, 5000, size=200)
    assert res["delivered"] == 5000
    assert sum(res["partitions"].values()) == 5000
    assert len(res["partitions"]) == 3  # keyed records spread over every partition
    assert kafka_server.count_records(topic) == 5000
    offs = kafka_server.offsets(topic)
    assert sum(hi - lo for lo, hi in offs.values()) == 5000
    assert {p: hi for p, (_, hi) in offs.items()} == {int(p): n for p, n in res["partitions"].items()}
    one = kafka_server.produce_n(topic, 10, partition=2, key_prefix="", value_prefix="p2-")
    assert one["partitions"] == {"2": 10}
    tail_recs = kafka_server.consume(topic, partition=2, from_offset=offs[2][1])
    assert [r.value for r in tail_recs] == [b"p2-%d" % i for i in range(10)]
    assert all(r.key is None for r in tail_recs)


def test_consumer_group_offsets(kafka_server):
    topic = unique_topic("group")
    kafka_server.create_topic(topic, partitions=3)
    group = "selfcheck-" + topic
    assert kafka_server.committed(group, topic) == {0: -1, 1: -1, 2: -1}
    kafka_server.commit(group, topic, {0: 0, 2: 0})
    assert kafka_server.committed(group, topic) == {0: 0, 1: -1, 2: 0}


def test_topics_are_not_created_implicitly(kafka_server):
    """auto.create.topics.enable=false: reading a missing topic fails instead of creating it."""
    missing = unique_topic("missing")
    with pytest.raises(AssertionError, match="Unknown topic"):
        kafka_server.consume(missing, count=1, timeout=1)
    with pytest.raises(AssertionError, match="TOPIC_ALREADY_EXISTS"):
        topic = unique_topic("twice")
        kafka_server.create_topic(topic)
        kafka_server.create_topic(topic)


def test_delete_topic(kafka_server):
    topic = unique_topic("gone")
    kafka_server.create_topic(topic, partitions=2)
    kafka_server.produce(topic, [("k", "v")])
    kafka_server.delete_topic(topic)

    def gone():
        try:
            kafka_server.describe_topic(topic, timeout=1)
        except AssertionError as exc:
            return "Unknown topic" in str(exc)
        return False

    wait_for(gone, timeout=20, what="topic %s to disappear from the metadata" % topic)
