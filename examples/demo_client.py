"""Drives the demo broker started by examples/demo.sh and prints a summary.

1. Adds ORDERS orders to the Redis stream `orders` with redis-cli; every hundredth (from the
   43rd) is poisoned. The mapping feeds them to the function `orders` one per invocation.
2. Waits, through the broker's /metrics, until every order is acknowledged or dead-lettered,
   and prints throughput, batches and retries.
3. Shows the dead letters with `sluice dlq list` and replays them into `echo` with
   `sluice dlq replay --to-function`.
4. A short round of direct invocations of `echo`: sync (latencies) and async (destination).
"""

import argparse
import json
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit("demo: timed out waiting for " + what)


def invoke(base, fn, payload, kind="RequestResponse"):
    req = urllib.request.Request(
        "%s/2015-03-31/functions/%s/invocations" % (base, fn),
        data=json.dumps(payload).encode(), method="POST",
        headers={"X-Amz-Invocation-Type": kind})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def metrics(base):
    """The broker's Prometheus samples: {'name{labels}': value}."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def total(m, name, **labels):
    """The sum of metric `name` over the samples that carry `labels`."""
    return int(sum(v for series, v in m.items()
                   if series.split("{", 1)[0] == name
                   and all('%s="%s"' % kv in series for kv in labels.items())))


def redis_cli(port, *args, stdin=None):
    return subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin, check=True,
                          capture_output=True, text=True).stdout


def indent(text):
    return "\n".join("    " + x for x in text.rstrip("\n").splitlines())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--orders", type=int, default=500)
    a = ap.parse_args()
    addr_file = Path(a.state) / "sluice.addr"
    addr = wait_for(lambda: addr_file.exists() and addr_file.read_text().endswith("\n")
                    and addr_file.read_text().strip(), 30, "the broker")
    base = "http://" + addr
    dlq_uri = "redis://127.0.0.1:%d/orders-dlq" % a.redis_port
    print("demo: broker listening on", base)

    # 1. The orders, one XADD per line on redis-cli's standard input.
    poisoned = [i for i in range(a.orders) if i % 100 == 42]
    lines = []
    for i in range(a.orders):
        order = {"order": i, "item": "poison" if i in poisoned else "widget", "qty": 1 + i % 5}
        lines.append("XADD orders * body '%s' customer c%d" % (json.dumps(order), i % 17))
    t0 = time.monotonic()
    redis_cli(a.redis_port, stdin="\n".join(lines) + "\n")
    print("demo: added %d orders to the stream 'orders' (%d poisoned: %s)"
          % (a.orders, len(poisoned), ", ".join(str(i) for i in poisoned)))

    # 2. Every order acknowledged or dead-lettered.
    good = a.orders - len(poisoned)
    wait_for(lambda: total(metrics(base), "sluice_redis_acknowledged_total") >= good, 120,
             "the good orders to be acknowledged")
    t_good = time.monotonic() - t0
    def settled():
        m = metrics(base)
        done = (total(m, "sluice_redis_acknowledged_total")
                + total(m, "sluice_redis_redriven_total"))
        return done >= a.orders and m

    m = wait_for(settled, 120, "every order to be acknowledged or redriven")
    t_all = time.monotonic() - t0
    print("demo: %d good orders processed and acknowledged in %.2f s: %.0f records/s "
          "(BatchSize 1, up to 10 invocations at a time)" % (good, t_good, good / t_good))
    print("demo: %d batches invoked, %d failed; %d messages received again after the "
          "visibility timeout (2 s); %d moved to orders-dlq after 2 receives (all done after "
          "%.1f s)" % (total(m, "sluice_esm_batches_total"),
                       total(m, "sluice_esm_batches_failed_total"),
                       total(m, "sluice_redis_reclaimed_total"),
                       total(m, "sluice_redis_redriven_total"), t_all))

    # 3. The dead letters, and their replay into another function.
    r = subprocess.run([a.sluice, "dlq", "list", dlq_uri], capture_output=True, text=True)
    print("demo: sluice dlq list %s  (exit %d)" % (dlq_uri, r.returncode))
    print(indent(r.stdout + r.stderr))
    r = subprocess.run([a.sluice, "dlq", "replay", dlq_uri, "--to-function", "echo",
                        "--endpoint", base], capture_output=True, text=True)
    print("demo: sluice dlq replay %s --to-function echo --endpoint %s  (exit %d)"
          % (dlq_uri, base, r.returncode))
    print(indent(r.stdout + r.stderr))
    print("demo: orders-dlq now holds %s entries" % redis_cli(a.redis_port, "XLEN",
                                                              "orders-dlq").strip())

    # 4. Direct invocations, sync and async.
    count = 100
    lat = []
    for i in range(count):
        t = time.perf_counter()
        status, body = invoke(base, "echo", {"n": i})
        lat.append((time.perf_counter() - t) * 1000)
        assert status == 200 and json.loads(body)["n"] == i
    lat.sort()
    print("demo: %d sync invocations of echo: p50 %.2f ms, p99 %.2f ms"
          % (count, statistics.median(lat), lat[int(len(lat) * 0.99) - 1]))
    t = time.perf_counter()
    for i in range(count):
        status, _ = invoke(base, "echo", {"async": i}, kind="Event")
        assert status == 202
    took = time.perf_counter() - t
    successes = Path(a.work) / "successes.jsonl"
    wait_for(lambda: successes.exists() and len(successes.read_text().splitlines()) >= count,
             60, "the success records")
    print("demo: %d async events accepted (each durable before its 202) in %.2f s; the "
          "OnSuccess destination holds %d records" % (count, took,
                                                      len(successes.read_text().splitlines())))

    m = metrics(base)
    print("demo: sluice_invocations_total: orders %d, echo %d (%d replayed dead letters, %d sync, "
          "%d async); sluice_cold_starts_total %d"
          % (total(m, "sluice_invocations_total", function="orders"),
             total(m, "sluice_invocations_total", function="echo"), len(poisoned), count, count,
             total(m, "sluice_cold_starts_total")))


if __name__ == "__main__":
    main()
