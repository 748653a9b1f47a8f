#!/usr/bin/env bash
# Starts a single-node Apache Kafka broker in KRaft mode (one JVM is both broker and controller)
# on 127.0.0.1, from the jars deploy/kafka/fetch-jars.sh resolved from Maven Central.
#
#   deploy/kafka/start-kafka.sh --dir DIR [--port 9092] [--controller-port 9093]
#                               [--background [--timeout 90]]
#   deploy/kafka/start-kafka.sh --check HOST:PORT [--timeout 0]
#
# Start: writes DIR/server.properties and DIR/log4j.properties (every run), formats the log
# directory DIR/data with a random cluster id through the storage tool's main class
# (kafka.tools.StorageTool in Kafka 3.9) unless it is formatted already (so a developer's
# broker keeps its topics across restarts), then runs `java -cp 'JARS/*' kafka.Kafka`:
#   default        in the foreground: the script execs the JVM (the caller's pid is the
#                  broker's; it logs to stdout/stderr);
#   --background   detached, logging to DIR/kafka.log, pid in DIR/kafka.pid; the script
#                  returns once the broker serves metadata (exit 0, prints the bootstrap
#                  address) or fails after --timeout seconds (default 90) with the log tail.
#
# --check HOST:PORT: exit 0 when the broker at HOST:PORT serves metadata, else 1. With
# --timeout N it polls every 0.1 s for up to N seconds. The probe is a Kafka protocol Metadata
# request (v4, no topics) sent by /usr/bin/python3 over a raw socket: it answers only once the
# broker has caught up with the metadata log and registered (a fenced broker is not listed),
# i.e. when topics can be created. It costs a few milliseconds, not a JVM start.
#
# Environment:
#   SLUICE_KAFKA_JARS   the jars directory (default: whatever fetch-jars.sh prints; it is run
#                       when the directory holds no kafka_2.13 jar)
#   JAVA                the java binary (default java on PATH); Java 17 or newer
#   KAFKA_HEAP_OPTS     default -Xms64m -Xmx512m
#   KAFKA_JVM_OPTS      default: fast start-up flags (see below); extra flags: KAFKA_OPTS
#   KAFKA_LOG_LEVEL     the broker's log4j root level (default INFO)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
JAVA="${JAVA:-java}"

die() { echo "start-kafka: ERROR: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# ---- readiness probe -----------------------------------------------------------------------
# check HOST:PORT TIMEOUT: 0 once a Metadata v4 request is answered with at least one broker.
check() {
  local addr=$1 timeout=${2:-0}
  [ -x /usr/bin/python3 ] || die "/usr/bin/python3 is needed for the readiness probe"
  /usr/bin/python3 - "$addr" "$timeout" <<'PY'
import socket, struct, sys, time

host, _, port = sys.argv[1].rpartition(":")
deadline = time.monotonic() + float(sys.argv[2])

def probe():
    client = b"sluice-ready"
    # Request header v1 (api_key 3 = Metadata, version 4, correlation id, client id),
    # then topics = [] (no topics: brokers only) and allow_auto_topic_creation = false.
    body = struct.pack(">hhih", 3, 4, 7, len(client)) + client + struct.pack(">ib", 0, 0)
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            return buf
        (size,) = struct.unpack(">i", read(4))
        resp = read(size)
    # correlation id, throttle_time_ms, brokers array count
    corr, _throttle, nbrokers = struct.unpack(">iii", resp[:12])
    return corr == 7 and nbrokers > 0

while True:
    try:
        if probe():
            sys.exit(0)
    except (OSError, ConnectionError, struct.error):
        pass
    if time.monotonic() >= deadline:
        sys.exit(1)
    time.sleep(0.1)
PY
}

# ---- arguments ------------------------------------------------------------------------------
DIR="" PORT=9092 CPORT=9093 BACKGROUND=0 TIMEOUT="" CHECK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) DIR=${2:?}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    --controller-port) CPORT=${2:?}; shift 2 ;;
    --background) BACKGROUND=1; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --check) CHECK=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "start-kafka: unknown argument '$1'" >&2; usage ;;
  esac
done

if [ -n "$CHECK" ]; then
  check "$CHECK" "${TIMEOUT:-0}"
  exit $?
fi
[ -n "$DIR" ] || usage
[ "$PORT" != "$CPORT" ] || die "--port and --controller-port must differ"

command -v "$JAVA" >/dev/null 2>&1 \
  || die "$JAVA not found: the Kafka broker needs a Java 17+ runtime (Debian 12: apt-get install openjdk-17-jre-headless)"

JARS="${SLUICE_KAFKA_JARS:-$ROOT/.cache/kafka-jars}"
if ! compgen -G "$JARS/kafka_2.13-*.jar" >/dev/null; then
  JARS="$(bash "$HERE/fetch-jars.sh" | tail -n 1)" || die "deploy/kafka/fetch-jars.sh failed"
fi

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
DATA="$DIR/data"

# ---- configuration --------------------------------------------------------------------------
cat >"$DIR/server.properties" <<EOF
# Written by deploy/kafka/start-kafka.sh: a single-node KRaft broker+controller on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA
# Tests create their topics explicitly; a typo must not create a topic.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Internal topics with few partitions are created in a fraction of the time of the defaults
# (50 each), which the first consumer group / transaction would otherwise wait for.
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
# Consumer groups form at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# A small machine: few threads.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
# Registration and unfencing take one heartbeat each; shorter intervals start up sooner.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=9000
EOF

LEVEL="${KAFKA_LOG_LEVEL:-INFO}"
cat >"$DIR/log4j.properties" <<EOF
log4j.rootLogger=$LEVEL, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF

# Fast JVM start-up: one GC thread (no parallel GC set-up), C1 only (no C2 compile of the start-up
# code paths), the JDK's default class-data-sharing archive when present.
read -r -a HEAP <<<"${KAFKA_HEAP_OPTS:--Xms64m -Xmx512m}"
read -r -a JVM <<<"${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -XX:-UsePerfData -Djava.awt.headless=true}"
read -r -a EXTRA <<<"${KAFKA_OPTS:-}"
JAVA_CMD=("$JAVA" "${HEAP[@]}" "${JVM[@]}" "${EXTRA[@]}"
  "-Dlog4j.configuration=file:$DIR/log4j.properties" "-Dkafka.logs.dir=$DIR"
  -cp "$JARS/*")

# ---- storage --------------------------------------------------------------------------------
if [ ! -f "$DATA/meta.properties" ]; then
  # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding; never starting with '-'
  # (Kafka's own random-uuid avoids those, since they read as command-line options).
  cluster_id="-"
  while [ "${cluster_id:0:1}" = "-" ]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  if ! out="$("${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
                -c "$DIR/server.properties" </dev/null 2>&1)"; then
    echo "$out" >&2
    die "formatting $DATA failed (kafka.tools.StorageTool, output above)"
  fi
fi

# ---- run ------------------------------------------------------------------------------------
if [ "$BACKGROUND" = 0 ]; then
  exec "${JAVA_CMD[@]}" kafka.Kafka "$DIR/server.properties" </dev/null
fi

PIDFILE="$DIR/kafka.pid"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  die "a broker from $DIR already runs (pid $(cat "$PIDFILE"))"
fi
if check "127.0.0.1:$PORT" 0; then
  die "127.0.0.1:$PORT already answers Kafka Metadata requests, and not from $DIR; pick another --port"
fi
nohup setsid "${JAVA_CMD[@]}" kafka.Kafka "$DIR/server.properties" </dev/null >>"$DIR/kafka.log" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"
limit="${TIMEOUT:-90}"
deadline=$((SECONDS + limit))
until check "127.0.0.1:$PORT" 0.5; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 40 "$DIR/kafka.log" >&2 || true
    rm -f "$PIDFILE"
    die "the broker (pid $pid) exited before it served metadata; log $DIR/kafka.log (tail above)"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    tail -n 40 "$DIR/kafka.log" >&2 || true
    die "the broker (pid $pid) did not serve metadata on 127.0.0.1:$PORT within ${limit}s; it is still running; log $DIR/kafka.log (tail above)"
  fi
done
echo "127.0.0.1:$PORT"
