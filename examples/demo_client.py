"""Drives the demo broker started by examples/demo.sh and prints a summary."""

import argparse
import json
import statistics
import time
import urllib.request
from pathlib import Path


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit("demo: timed out waiting for " + what)


def invoke(base, fn, payload, kind="RequestResponse"):
    req = urllib.request.Request(
        "%s/2015-03-31/functions/%s/invocations" % (base, fn),
        data=json.dumps(payload).encode(), method="POST",
        headers={"X-Amz-Invocation-Type": kind})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers), r.read()


def lines(path):
    p = Path(path)
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--count", type=int, default=200)
    a = ap.parse_args()
    addr = wait_for(lambda: (Path(a.state) / "sluice.addr").exists() and
                    (Path(a.state) / "sluice.addr").read_text().strip(), 30, "the broker")
    base = "http://" + addr
    print("demo: broker listening on", base)

    lat = []
    for i in range(a.count):
        t = time.perf_counter()
        status, _, body = invoke(base, "echo", {"n": i, "msg": "hello"})
        lat.append((time.perf_counter() - t) * 1000)
        assert status == 200 and json.loads(body)["n"] == i
    lat.sort()
    print("demo: %d sync invocations of echo: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (a.count, statistics.median(lat), lat[int(len(lat) * 0.99) - 1], lat[-1]))

    status, headers, body = invoke(base, "always-fails", {"try": 1})
    print("demo: sync call of always-fails -> %d, X-Amz-Function-Error: %s, body %s"
          % (status, headers.get("X-Amz-Function-Error"), body.decode()))

    t = time.perf_counter()
    for i in range(a.count):
        status, _, _ = invoke(base, "echo", {"async": i}, kind="Event")
        assert status == 202
    took = time.perf_counter() - t
    print("demo: %d async events accepted (each durable before its 202) in %.2f s"
          % (a.count, took))
    invoke(base, "always-fails", {"async": "will fail"}, kind="Event")

    ok = wait_for(lambda: len(lines(Path(a.work) / "successes.jsonl")) >= a.count and
                  lines(Path(a.work) / "successes.jsonl"), 60, "success records")
    bad = wait_for(lambda: lines(Path(a.work) / "failures.jsonl"), 60, "the failure record")
    print("demo: OnSuccess destination holds %d records" % len(ok))
    ctx = bad[0]["requestContext"]
    print("demo: OnFailure destination got %s after %d attempts (retried after 0.5 s and 1 s)"
          % (ctx["condition"], ctx["approximateInvokeCount"]))

    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    print("demo: metrics:")
    for line in metrics.splitlines():
        if line.startswith(("sluice_invocations_total", "sluice_errors_total",
                            "sluice_async_retries_total", "sluice_instances",
                            "sluice_cold_starts_total")):
            print("   ", line)


if __name__ == "__main__":
    main()
