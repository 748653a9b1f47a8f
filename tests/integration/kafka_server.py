"""A real Apache Kafka broker for the integration tests, and a client for it.

KafkaServer starts deploy/kafka/start-kafka.sh in the foreground (the script execs the JVM):
a single-node KRaft broker+controller on 127.0.0.1 with two free ports and its log directory in
a temporary directory, from the jars deploy/kafka/fetch-jars.sh resolved from Maven Central
(tests/run.sh fetches them before ctest and exports SLUICE_KAFKA_JARS; run alone, start()
fetches them itself). Readiness is a Kafka protocol Metadata request over a raw socket, polled
with a deadline: the broker is ready once it lists itself, i.e. once topics can be created.

Everything else goes through <build>/tests/kafka_admin (tests/integration/kafka_admin.c, on
librdkafka): create/delete/describe topics, produce (fast generated records or exact ones),
consume without a consumer group, watermarks, a group's committed offsets. One short process
per call, no JVM.

Missing java, jars or helper FAIL with the reason; nothing is skipped or faked.

Bytes: keys, values and headers are bytes in Kafka. Methods take bytes or str (str is sent as
UTF-8) and return bytes. Between Python and kafka_admin they travel as JSON strings with one
character per byte (latin-1), which is lossless.
"""

import collections
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from sluice_testlib import build_dir, free_port, repo_root, tail, timeout_scale, wait_for

__all__ = ["KafkaServer", "KafkaRecord", "kafka_jars_dir", "kafka_admin_path", "metadata_ready",
           "unique_topic"]

KafkaRecord = collections.namedtuple("KafkaRecord",
                                     "partition offset timestamp key value headers")
KafkaRecord.__doc__ = """A consumed record: key/value bytes or None; headers a list of
(name str, value bytes or None)."""

_topic_counter = itertools.count(1)


def unique_topic(prefix="t"):
    """A topic name no other test in this session uses (tests share one broker)."""
    return "%s-%d-%d" % (prefix, os.getpid(), next(_topic_counter))


def kafka_jars_dir():
    """$SLUICE_KAFKA_JARS, else <repo>/.cache/kafka-jars (fetch-jars.sh's default)."""
    env = os.environ.get("SLUICE_KAFKA_JARS")
    return Path(env) if env else repo_root() / ".cache" / "kafka-jars"


def kafka_admin_path():
    """<build>/tests/kafka_admin, built by tests/CMakeLists.txt."""
    return build_dir() / "tests" / "kafka_admin"


def metadata_ready(host, port, timeout=2.0):
    """True when the broker at host:port answers a Metadata request (v4, no topics) listing at
    least one broker. A KRaft broker lists itself only once it has caught up with the metadata
    log and been unfenced, so this is "topics can be created now". False on any socket error."""
    client = b"sluice-ready"
    body = (struct.pack(">hhih", 3, 4, 7, len(client)) + client  # Metadata v4 header
            + struct.pack(">ib", 0, 0))  # topics: [] (none), allow_auto_topic_creation false
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            buf = b""
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                buf += chunk
    except OSError:
        return False
    if len(buf) < 16:
        return False
    # size, correlation id, throttle_time_ms, brokers count
    _size, corr, _throttle, nbrokers = struct.unpack(">iiii", buf[:16])
    return corr == 7 and nbrokers > 0


def _b(v):
    """bytes/str/None -> the latin-1 JSON string kafka_admin reads (None stays None)."""
    if v is None:
        return None
    if isinstance(v, str):
        v = v.encode("utf-8")
    if not isinstance(v, (bytes, bytearray)):
        raise TypeError("Kafka keys, values and headers are bytes or str, not %r" % type(v))
    return bytes(v).decode("latin-1")


def _unb(v):
    return None if v is None else v.encode("latin-1")


class KafkaServer:
    """A real single-node KRaft Kafka broker on 127.0.0.1:<free port>, state in `workdir`.

    .host .port .bootstrap ("127.0.0.1:PORT") .controller_port .log_path .proc
    """

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.host = "127.0.0.1"
        self.port = None
        self.controller_port = None
        self.proc = None
        self.log_path = self.workdir / "kafka.log"
        self.start_seconds = None  # launch to ready, of the last start()

    @property
    def bootstrap(self):
        if self.port is None:
            raise AssertionError("kafka not started")
        return "%s:%d" % (self.host, self.port)

    # -- lifecycle

    def _preflight(self):
        if shutil.which("java") is None:
            raise AssertionError("java is not on PATH (PATH=%s): the Kafka tests run a real Apache "
                                 "Kafka broker, which needs a Java 17+ runtime (Debian 12: "
                                 "openjdk-17-jre-headless)" % os.environ.get("PATH"))
        admin = kafka_admin_path()
        if not admin.exists():
            raise AssertionError("%s does not exist (SLUICE_BUILD=%s): build the kafka_admin "
                                 "target first" % (admin, os.environ.get("SLUICE_BUILD")))
        jars = kafka_jars_dir()
        if not list(jars.glob("kafka_2.13-*.jar")):
            # tests/run.sh fetches before ctest; run alone, fetch here (idempotent, loud).
            script = repo_root() / "deploy" / "kafka" / "fetch-jars.sh"
            env = dict(os.environ, SLUICE_KAFKA_JARS=str(jars))
            r = subprocess.run(["bash", str(script)], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, env=env, timeout=900)
            if r.returncode != 0 or not list(jars.glob("kafka_2.13-*.jar")):
                raise AssertionError("no Kafka jars in %s and %s failed (exit %s):\n%s%s"
                                     % (jars, script, r.returncode, r.stdout, r.stderr))
        return jars

    def start(self, attempts=3, timeout=90.0):
        """Starts the broker and waits (up to `timeout` s, scaled) until it serves metadata.
        Ports are picked before the JVM binds them; an early exit retries on fresh ports."""
        jars = self._preflight()
        script = repo_root() / "deploy" / "kafka" / "start-kafka.sh"
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            port = free_port()
            cport = free_port()
            while cport == port:
                cport = free_port()
            rundir = self.workdir / ("run%d" % attempt)
            env = dict(os.environ, SLUICE_KAFKA_JARS=str(jars))
            t0 = time.monotonic()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as log:
                log.write(b"==== start-kafka.sh --dir %s --port %d --controller-port %d ====\n"
                          % (bytes(rundir), port, cport))
                log.flush()
                self.proc = subprocess.Popen(
                    ["bash", str(script), "--dir", str(rundir), "--port", str(port),
                     "--controller-port", str(cport)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True)
            self.port, self.controller_port = port, cport

            def ready():
                if self.proc.poll() is not None:
                    return "exited"
                return metadata_ready(self.host, port, timeout=1.0)

            try:
                state = wait_for(ready, timeout=timeout, interval=0.05,
                                 what="kafka on 127.0.0.1:%d to serve metadata" % port)
            except AssertionError as exc:
                self._kill()
                raise AssertionError("%s\nkafka log tail:\n%s"
                                     % (exc, tail(self.log_text(), 60))) from None
            if state is True:
                self.start_seconds = time.monotonic() - t0
                return self
            with open(self.log_path, "rb") as f:
                f.seek(log_start)
                if b"Address already in use" not in f.read():
                    break
        raise AssertionError("kafka exited with %s before it served metadata; log tail (%s):\n%s"
                             % (self.proc.returncode, self.log_path, tail(self.log_text(), 60)))

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def stop(self, timeout=20.0):
        """SIGTERM (a controlled shutdown), SIGKILL after `timeout` s. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        return self.proc.returncode

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- kafka_admin

    def admin(self, *args, timeout=30.0, input=None, ok_codes=(0,)):
        """Runs kafka_admin -b <bootstrap> -t <timeout scaled> ARGS...; returns its stdout.
        An exit code outside ok_codes raises AssertionError with its stderr."""
        t = timeout * timeout_scale()
        cmd = [str(kafka_admin_path()), "-b", self.bootstrap, "-t", "%.1f" % t] + [str(a) for a in args]
        try:
            r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=t + 30)
        except subprocess.TimeoutExpired:
            raise AssertionError("kafka_admin %s did not finish within %.0f s"
                                 % (" ".join(map(str, args)), t + 30)) from None
        if r.returncode not in ok_codes:
            raise AssertionError("kafka_admin %s exited %d: %s%s"
                                 % (" ".join(map(str, args)), r.returncode, r.stderr.strip(),
                                    "" if self.running() else "\n(the broker is not running; "
                                    "log tail:\n%s)" % tail(self.log_text(), 30)))
        return r.stdout

    def create_topic(self, name, partitions=1, config=None, replication_factor=1, timeout=30.0):
        """Creates the topic and waits until every partition has a leader. config: dict of
        topic configs (e.g. {"retention.ms": "60000"})."""
        args = ["create-topic", name, partitions, "-r", replication_factor]
        for k, v in (config or {}).items():
            args += ["-c", "%s=%s" % (k, v)]
        return json.loads(self.admin(*args, timeout=timeout))

    def delete_topic(self, name, timeout=30.0):
        self.admin("delete-topic", name, timeout=timeout)

    def describe_topic(self, name, timeout=30.0):
        """{"topic": name, "partitions": [{"partition": 0, "leader": 1}, ...]}"""
        return json.loads(self.admin("describe", name, timeout=timeout))

    def produce(self, topic, records, timeout=30.0):
        """Produces exact records, in order, and waits for every acknowledgement (acks=all).

        records: an iterable of dicts {"key", "value", "partition", "headers", "timestamp"}
        (all optional; headers a list of (name, value) or a dict), or (key, value) tuples, or
        bare values. Returns [(partition, offset), ...] in the same order."""
        lines = []
        for r in records:
            if isinstance(r, dict):
                d = dict(r)
            elif isinstance(r, tuple):
                d = {"key": r[0], "value": r[1]}
            else:
                d = {"value": r}
            out = {"key": _b(d.get("key")), "value": _b(d.get("value"))}
            if d.get("partition") is not None:
                out["partition"] = int(d["partition"])
            if d.get("timestamp") is not None:
                out["timestamp"] = int(d["timestamp"])
            hdrs = d.get("headers") or []
            if isinstance(hdrs, dict):
                hdrs = list(hdrs.items())
            if hdrs:
                out["headers"] = [[_b(k), _b(v)] for k, v in hdrs]
            lines.append(json.dumps(out))
        text = self.admin("produce", topic, "--json", input="\n".join(lines) + "\n",
                          timeout=timeout)
        res = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [(x["partition"], x["offset"]) for x in res]

    def produce_n(self, topic, n, partition=None, size=0, key_prefix="key-",
                  value_prefix="value-", timeout=60.0):
        """Produces n generated records fast: key <key_prefix><i> (no key when key_prefix is
        ""), value <value_prefix><i> padded with 'x' to `size` bytes; partition fixed or by key
        hash. Returns {"delivered": n, "partitions": {"0": count, ...}}."""
        args = ["produce", topic, "-n", n, "-s", size, "-k", key_prefix, "-v", value_prefix]
        if partition is not None:
            args += ["-p", partition]
        return json.loads(self.admin(*args, timeout=timeout))

    def consume(self, topic, count=None, partition=None, from_offset=None, timeout=30.0):
        """Reads records without a consumer group: `count` records (raising AssertionError if
        fewer arrive within `timeout`), or, with count None, everything up to the end the
        partitions have now. From `from_offset` (default: the beginning), of every partition or
        only `partition`. Returns [KafkaRecord] in arrival order (ordered within a partition)."""
        args = ["consume", topic]
        if count is not None:
            args += ["-n", count]
        if partition is not None:
            args += ["-p", partition]
        if from_offset is not None:
            args += ["--from", from_offset]
        out = []
        for line in self.admin(*args, timeout=timeout).splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            out.append(KafkaRecord(d["partition"], d["offset"], d["timestamp"], _unb(d["key"]),
                                   _unb(d["value"]),
                                   [(_unb(k).decode("utf-8", "surrogateescape"), _unb(v))
                                    for k, v in d["headers"]]))
        return out

    def count_records(self, topic, partition=None, timeout=30.0):
        """How many records the topic (or one partition) holds now."""
        args = ["consume", topic, "--count-only"]
        if partition is not None:
            args += ["-p", partition]
        return json.loads(self.admin(*args, timeout=timeout))["count"]

    def offsets(self, topic, timeout=30.0):
        """{partition: (low, high)} watermarks."""
        d = json.loads(self.admin("offsets", topic, timeout=timeout))
        return {int(p): tuple(v) for p, v in d.items()}

    def committed(self, group, topic, timeout=30.0):
        """{partition: committed offset, or -1 where the group has none}, without joining."""
        d = json.loads(self.admin("committed", group, topic, timeout=timeout))
        return {int(p): v for p, v in d.items()}

    def commit(self, group, topic, offsets, timeout=30.0):
        """Commits {partition: offset} for `group` without joining it (the group must have no
        active members)."""
        self.admin("commit", group, topic, *["%d=%d" % (p, o) for p, o in sorted(offsets.items())],
                   timeout=timeout)
