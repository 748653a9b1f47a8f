#!/usr/bin/env bash
# The README's demo: installs what Sluice needs, builds it, starts the broker with two
# functions (echo, and one that always fails), invokes them synchronously and asynchronously
# in a loop, and prints a summary: latencies, retries, destination records, metrics.
# Usage: bash examples/demo.sh [INVOCATIONS]   (default 200)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
n=${1:-200}

bash deploy/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "demo: built $root/build/sluice"

work=$(mktemp -d /tmp/sluice-demo.XXXXXX)
cat >"$work/demo.yaml" <<YAML
Listen: 127.0.0.1:0
StateDir: $work/state
Functions:
  - FunctionName: echo
    Command: ["$root/build/examples/echo-runtime"]
    Handler: echo.handler
    Timeout: 3
    MemorySize: 128
    EventInvokeConfig:
      DestinationConfig:
        OnSuccess: {Destination: "file://$work/successes.jsonl"}
  - FunctionName: always-fails
    Command: ["$root/build/examples/fail-runtime"]
    Handler: fail.handler
    EventInvokeConfig:
      MaximumRetryAttempts: 2
      RetryBaseDelaySeconds: 0.5
      DestinationConfig:
        OnFailure: {Destination: "file://$work/failures.jsonl"}
YAML

./build/sluice serve --config "$work/demo.yaml" 2>"$work/broker.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT

/usr/bin/python3 examples/demo_client.py --state "$work/state" --work "$work" --count "$n"

kill -TERM $pid
wait $pid
trap - EXIT
echo "demo: broker drained and exited 0; its log, config and destination files are in $work"
