#!/usr/bin/env bash
# The README's demo: installs what Sluice needs, builds it, starts a private redis-server and
# the broker with an event source mapping that feeds a function from a Redis stream (SQS
# semantics: visibility timeout, maxReceiveCount, a dead-letter stream), adds orders to the
# stream (a few of them poisoned), and prints what happened: throughput, batches, retries, the
# dead letters (`sluice dlq list`) and their replay (`sluice dlq replay`), then a short round of
# direct sync and async invocations. Everything is stopped at the end.
# Usage: bash examples/demo.sh [ORDERS]   (default 500)
# SLUICE_BUILD_DIR chooses the build directory (default build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
n=${1:-500}

bash deploy/bootstrap.sh
build=${SLUICE_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
build=$(cd "$build" && pwd)
echo "demo: built $build/sluice"

work=$(mktemp -d /tmp/sluice-demo.XXXXXX)
redis_pid=
broker_pid=
cleanup() {
  if [ -n "$broker_pid" ]; then kill -TERM "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  if [ -n "$redis_pid" ]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# A private redis-server: a free port, no persistence, its files in the demo's directory.
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
deadline=$((SECONDS + 20))
until redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; do
  if ! kill -0 "$redis_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "demo: redis-server did not answer PING; see $work/redis.log" >&2
    exit 1
  fi
  sleep 0.05
done
echo "demo: redis-server on 127.0.0.1:$port (no persistence, files in $work)"

cat >"$work/demo.yaml" <<YAML
Listen: 127.0.0.1:0
StateDir: $work/state
Functions:
  - FunctionName: orders
    Command: ["$build/examples/fail-runtime"]
    Handler: fail.flaky          # echoes its event; throws when the event contains "poison"
    Timeout: 3
  - FunctionName: echo
    Command: ["$build/examples/echo-runtime"]
    Handler: echo.handler
    Timeout: 3
    EventInvokeConfig:
      DestinationConfig:
        OnSuccess: {Destination: "file://$work/successes.jsonl"}
EventSourceMappings:
  - FunctionName: orders
    # The queue's attributes, as SQS keeps them: a received message is invisible for 2 s; after
    # 2 receives it moves to the stream orders-dlq.
    EventSourceArn: redis://127.0.0.1:$port/orders?VisibilityTimeout=2&maxReceiveCount=2&deadLetterTarget=orders-dlq
    BatchSize: 1                 # one order per invocation: a poisoned one fails only itself
    ScalingConfig: {MaximumConcurrency: 10}
YAML

"$build/sluice" serve --config "$work/demo.yaml" 2>"$work/broker.log" &
broker_pid=$!

/usr/bin/python3 examples/demo_client.py --state "$work/state" --work "$work" \
  --sluice "$build/sluice" --redis-port "$port" --orders "$n"

kill -TERM "$broker_pid"
status=0
wait "$broker_pid" || status=$?
broker_pid=
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$redis_pid" 2>/dev/null || true
redis_pid=
trap - EXIT
if [ "$status" -ne 0 ]; then
  echo "demo: the broker exited with $status on SIGTERM; see $work/broker.log" >&2
  exit 1
fi
echo "demo: broker drained and exited 0, redis-server shut down; log and config in $work"
