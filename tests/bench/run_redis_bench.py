#!/usr/bin/python3
"""The Redis Streams drain benchmark: N small stream entries drained by a mapping into the C echo
runtime, against a plain hiredis XREADGROUP+XACK loop draining the same entries in the same run.

    /usr/bin/python3 tests/bench/run_redis_bench.py --build BUILD_DIR [--entries N]
        [--rounds R] [--batch-sizes 100,1000] [--window S] [--body-size B]
        [--memory-size MB] [--max-concurrency C] [--visibility-timeout S] [--timeout S]
        [--out FILE] [--keep] [--broker-env NAME=VALUE]...

Needs redis-server on PATH, BUILD_DIR/sluice, BUILD_DIR/examples/echo-runtime,
BUILD_DIR/bench/bench-redis-raw and BUILD_DIR/bench/bench-redis-fill (cmake --build BUILD_DIR
builds them all). Prints a Markdown table and writes the same numbers as JSON to --out
(default BUILD_DIR/bench/redis.json).

It asserts nothing about speed: it is a benchmark, read tests/bench/README.md. It exits 1 when
a drain was incomplete or wrong (records missing, acknowledged twice, left pending, failed
batches, a broker that did not exit cleanly), 2 on bad arguments.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from sluice_testlib import Broker, RedisServer, wait_for  # noqa: E402
from benchlib import children, log, proc_cpu_seconds, proc_status  # noqa: E402

FUNCTION = "echo"
SOURCE_STREAM = "bench-src"
RAW_GROUP = "g"
BROKER_GROUP = "bench"
METRICS_INTERVAL = 0.05


# ---------------------------------------------------------------------------------------------
# Redis and the broker

def group_info(redis, stream, group):
    """XINFO GROUPS for one group as a dict (pending, lag, entries-read ...), or None."""
    for g in redis.cmd("XINFO", "GROUPS", stream) or []:
        d = dict(zip(g[::2], g[1::2]))
        if d.get("name") == group:
            return d
    return None


def check_drained(redis, stream, group, n):
    """Waits briefly for the group to show everything read and acknowledged; returns the
    problems found (empty list: pending 0, lag 0, entries-read n)."""
    last = {}

    def done():
        info = group_info(redis, stream, group) or {}
        last.clear()
        last.update(info)
        return (info.get("pending") == 0 and info.get("lag") == 0
                and info.get("entries-read") == n)
    try:
        wait_for(done, timeout=5, interval=0.05, what="group %s of %s drained" % (group, stream))
        return [], last
    except AssertionError:
        return ["%s group %s not drained: pending %s, lag %s, entries-read %s (want 0, 0, %d)"
                % (stream, group, last.get("pending"), last.get("lag"),
                   last.get("entries-read"), n)], last


def metrics(broker):
    """{name: value} of every sample on /metrics, labels dropped and values summed (there is
    one function and one mapping)."""
    with urllib.request.urlopen(broker.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = name.partition("{")[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def source_commit(build):
    """`git describe --always --dirty` of the source tree the build directory was configured
    from (CMakeCache.txt), or None. The code moves; the JSON says which one was measured (as
    long as the build is current)."""
    try:
        text = (build / "CMakeCache.txt").read_text()
        src = next(line.split("=", 1)[1] for line in text.splitlines()
                   if line.startswith("CMAKE_HOME_DIRECTORY:"))
        p = subprocess.run(["git", "-C", src, "describe", "--always", "--dirty"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=10)
        return p.stdout.strip() or None
    except (OSError, StopIteration, subprocess.TimeoutExpired):
        return None


def fill(args, redis):
    p = subprocess.run([str(args.fill), "--port", str(redis.port), "--stream", SOURCE_STREAM,
                        "--entries", str(args.entries), "--body-size", str(args.body_size)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("bench-redis-fill exited %d: %s" % (p.returncode, p.stderr.strip()))
    r = json.loads(p.stdout.strip().splitlines()[-1])
    if redis.cmd("XLEN", SOURCE_STREAM) != args.entries:
        raise RuntimeError("the source stream holds %s entries, not %d"
                           % (redis.cmd("XLEN", SOURCE_STREAM), args.entries))
    return r


def copy_stream(redis, name):
    """A fresh copy of the source stream (same ids, same entries, no consumer groups)."""
    redis.cmd("UNLINK", name)
    if redis.cmd("COPY", SOURCE_STREAM, name) != 1:
        raise RuntimeError("COPY %s %s failed" % (SOURCE_STREAM, name))


# ---------------------------------------------------------------------------------------------
# The scenarios

def run_raw(args, redis, count, rnd):
    stream = "bench-raw-%d-%d" % (count, rnd)
    copy_stream(redis, stream)
    cpu0 = proc_cpu_seconds(redis.proc.pid)
    t0 = time.monotonic()
    p = subprocess.run([str(args.raw), "--port", str(redis.port), "--stream", stream,
                        "--group", RAW_GROUP, "--count", str(count), "--expect",
                        str(args.entries)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=args.timeout)
    wall = time.monotonic() - t0
    redis_cpu = proc_cpu_seconds(redis.proc.pid) - cpu0
    if p.returncode != 0:
        raise RuntimeError("bench-redis-raw exited %d: %s" % (p.returncode, p.stderr.strip()))
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["process_wall_s"] = wall
    r["redis_cpu_s"] = redis_cpu
    problems, info = check_drained(redis, stream, RAW_GROUP, args.entries)
    if r["acked"] != args.entries:
        problems.append("raw COUNT %d acknowledged %d of %d" % (count, r["acked"], args.entries))
    r["group_after"] = {k: info.get(k) for k in ("pending", "lag", "entries-read")}
    r["problems"] = problems
    redis.cmd("UNLINK", stream)
    return r


def steady_rate(timeline, n, lo=0.1, hi=0.9):
    """Records/s between the samples where lo*n and hi*n were first acknowledged (leaves out
    start-up, the first cold starts and the tail), or None if the timeline is too coarse."""
    a = next((s for s in timeline if s[1] >= lo * n), None)
    b = next((s for s in timeline if s[1] >= hi * n), None)
    if not a or not b or b[0] <= a[0]:
        return None
    return (b[1] - a[1]) / (b[0] - a[0])


def run_broker(args, redis, work, batch_size, rnd):
    stream = "bench-sluice-%d-%d" % (batch_size, rnd)
    copy_stream(redis, stream)
    window = 0 if batch_size <= 10 else args.window
    mapping = {
        "FunctionName": FUNCTION,
        "EventSourceArn": "redis://127.0.0.1:%d/%s?VisibilityTimeout=%d&ConsumerGroup=%s"
                          % (redis.port, stream, args.visibility_timeout, BROKER_GROUP),
        "BatchSize": batch_size,
        "MaximumBatchingWindowInSeconds": window,
    }
    if args.max_concurrency:
        mapping["ScalingConfig"] = {"MaximumConcurrency": args.max_concurrency}
    d = work / ("sluice-%d-%d" % (batch_size, rnd))
    broker = Broker(d, binary=args.sluice, config={
        "Listen": "127.0.0.1:0",
        "StateDir": str(d / "state"),
        "Functions": [{
            "FunctionName": FUNCTION,
            "Command": [str(args.echo_runtime)],
            "Handler": "echo.handler",
            "Timeout": 30,
            "MemorySize": args.memory_size,
        }],
        "EventSourceMappings": [mapping],
    }, env=args.broker_env)
    r = {"batch_size": batch_size, "window_s": window, "problems": []}
    redis_cpu0 = proc_cpu_seconds(redis.proc.pid)
    timeline = []
    try:
        t0 = time.monotonic()
        broker.start()  # waits, with a deadline, for sluice.addr and an accepting port
        r["ready_s"] = time.monotonic() - t0
        m = {}
        deadline = t0 + args.timeout
        while True:
            m = metrics(broker)
            now = time.monotonic()
            acked = int(m.get("sluice_redis_acknowledged_total", 0))
            timeline.append((round(now - t0, 4), acked))
            if acked >= args.entries:
                break
            if now > deadline:
                r["problems"].append("BatchSize %d: only %d of %d acknowledged after %g s"
                                     % (batch_size, acked, args.entries, args.timeout))
                break
            time.sleep(METRICS_INTERVAL)
        t_done = timeline[-1][0]
        kids = children(broker.pid)
        r["seconds"] = t_done
        r["rps"] = acked / t_done if t_done > 0 else 0.0
        r["acked"] = acked
        r["first_ack_s"] = next((t for t, a in timeline if a > 0), None)
        r["steady_rps_10_90"] = steady_rate(timeline, args.entries)
        r["broker_peak_rss_kb"] = proc_status(broker.pid, "VmHWM")
        r["broker_cpu_s"] = proc_cpu_seconds(broker.pid)
        r["redis_cpu_s"] = proc_cpu_seconds(redis.proc.pid) - redis_cpu0
        r["instances"] = len(kids)
        r["instances_cpu_s"] = sum(proc_cpu_seconds(k) for k in kids)
        r["instances_peak_rss_kb_sum"] = sum(proc_status(k, "VmHWM") or 0 for k in kids)
        for key, name in (("batches", "sluice_esm_batches_total"),
                          ("records", "sluice_esm_records_total"),
                          ("batches_failed", "sluice_esm_batches_failed_total"),
                          ("records_failed", "sluice_esm_records_failed_total"),
                          ("reclaimed", "sluice_redis_reclaimed_total"),
                          ("cold_starts", "sluice_cold_starts_total")):
            r[key] = int(m.get(name, 0))
        problems, info = check_drained(redis, stream, BROKER_GROUP, args.entries)
        r["problems"] += problems
        r["group_after"] = {k: info.get(k) for k in ("pending", "lag", "entries-read")}
        if r["records"] != args.entries or r["reclaimed"]:
            r["problems"].append("BatchSize %d: %d records read, %d reclaimed (want %d, 0)"
                                 % (batch_size, r["records"], r["reclaimed"], args.entries))
        if r["batches_failed"] or r["records_failed"]:
            r["problems"].append("BatchSize %d: %d batches / %d records failed"
                                 % (batch_size, r["batches_failed"], r["records_failed"]))
        r["timeline"] = timeline
    finally:
        r["problems"] += broker.close()
        if args.keep:
            log("kept %s (broker log: %s)" % (d, broker.log_path))
        redis.cmd("UNLINK", stream)
    return r


def run(args):
    for exe in (args.sluice, args.echo_runtime, args.raw, args.fill):
        if not exe.exists():
            raise RuntimeError("%s is missing: build first (cmake --build %s)" % (exe, args.build))
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not on PATH")
    work = Path(tempfile.mkdtemp(prefix="sluice-rbench-"))
    log("work dir %s" % work)
    results = {"entries": args.entries, "body_bytes": args.body_size, "rounds": args.rounds,
               "batch_sizes": args.batch_sizes, "window_s": args.window,
               "memory_size": args.memory_size, "max_concurrency": args.max_concurrency,
               "visibility_timeout_s": args.visibility_timeout,
               "broker_env": args.broker_env_list, "cpus": os.cpu_count(),
               "source": source_commit(args.build), "scenarios": {}}
    problems = []
    redis = RedisServer(work / "redis")
    t_start = time.monotonic()
    try:
        redis.start()
        results["redis_version"] = dict(
            line.split(":", 1) for line in redis.cmd("INFO", "server").splitlines()
            if ":" in line).get("redis_version")
        f = fill(args, redis)
        results["fill"] = f
        log("redis %s on port %d: %d entries of %d bytes loaded in %.1f s (%.0f/s), "
            "used_memory %s" % (results["redis_version"], redis.port, args.entries,
                                f["body_bytes"], f["seconds"], f["rps"],
                                redis.cmd("MEMORY", "USAGE", SOURCE_STREAM)))
        runs = {bs: ([], []) for bs in args.batch_sizes}
        # Interleaved (raw, broker) per batch size per round: slow drift hits both alike.
        for rnd in range(args.rounds):
            for bs in args.batch_sizes:
                raw = run_raw(args, redis, bs, rnd)
                problems += raw["problems"]
                log("round %d COUNT %d raw: %.0f records/s (%.2f s)"
                    % (rnd + 1, bs, raw["rps"], raw["seconds"]))
                br = run_broker(args, redis, work, bs, rnd)
                problems += br["problems"]
                log("round %d BatchSize %d sluice: %.0f records/s (%.2f s, steady %s/s, "
                    "%d instances, peak RSS %s kB)"
                    % (rnd + 1, bs, br.get("rps", 0), br.get("seconds", 0),
                       "%.0f" % br["steady_rps_10_90"] if br.get("steady_rps_10_90") else "?",
                       br.get("instances", 0), br.get("broker_peak_rss_kb")))
                for p in raw["problems"] + br["problems"]:
                    log("problem: " + p)
                runs[bs][0].append(raw)
                runs[bs][1].append(br)
        for bs, (raws, brs) in runs.items():
            n = args.entries
            row = {"batch_size": bs, "window_s": brs[0]["window_s"],
                   "raw_runs": raws, "sluice_runs": brs,
                   "rps": statistics.median(b.get("rps", 0) for b in brs),
                   "baseline_rps": statistics.median(r["rps"] for r in raws),
                   "steady_rps_10_90": statistics.median(b.get("steady_rps_10_90") or 0
                                                         for b in brs),
                   "broker_peak_rss_kb": max(b.get("broker_peak_rss_kb") or 0 for b in brs),
                   "batches": statistics.median(b.get("batches", 0) for b in brs),
                   "instances": max(b.get("instances", 0) for b in brs),
                   "first_ack_s": statistics.median(b.get("first_ack_s") or 0 for b in brs),
                   "broker_cpu_us_per_record": statistics.median(
                       b.get("broker_cpu_s", 0) * 1e6 / n for b in brs),
                   "instances_cpu_us_per_record": statistics.median(
                       b.get("instances_cpu_s", 0) * 1e6 / n for b in brs),
                   "redis_cpu_us_per_record": statistics.median(
                       b.get("redis_cpu_s", 0) * 1e6 / n for b in brs),
                   "baseline_redis_cpu_us_per_record": statistics.median(
                       r["redis_cpu_s"] * 1e6 / n for r in raws)}
            row["ratio"] = row["rps"] / row["baseline_rps"] if row["baseline_rps"] else 0.0
            results["scenarios"]["batch_%d" % bs] = row
    finally:
        redis.stop()
        if args.keep:
            log("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["wall_s"] = time.monotonic() - t_start
    results["problems"] = problems
    results["errors"] = len(problems)
    return results


# ---------------------------------------------------------------------------------------------
# Report

def report(res):
    sc = res["scenarios"]
    lines = [
        "Redis Streams drain: %d entries (body %d bytes) per scenario, echo runtime "
        "(echo.handler, MemorySize %d), redis %s, %d round(s) (medians), %d CPUs%s%s, source %s"
        % (res["entries"], res["fill"]["body_bytes"], res["memory_size"], res["redis_version"],
           res["rounds"], res["cpus"],
           (", MaximumConcurrency %d" % res["max_concurrency"]) if res["max_concurrency"]
           else ", default concurrency",
           (", broker env " + " ".join(res["broker_env"])) if res["broker_env"] else "",
           res["source"] or "?"),
        "",
        "| scenario | records/s | baseline records/s (same COUNT) | ratio | broker peak RSS "
        "| batches | steady records/s (10–90 %) | instances |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for bs in res["batch_sizes"]:
        s = sc["batch_%d" % bs]
        lines.append("| BatchSize %d (window %g s) | %.0f | %.0f | %.2f× | %.1f MB | %d | %.0f "
                     "| %d |"
                     % (bs, s["window_s"], s["rps"], s["baseline_rps"], s["ratio"],
                        s["broker_peak_rss_kb"] / 1024, s["batches"], s["steady_rps_10_90"],
                        s["instances"]))
    lines.append("")
    for bs in res["batch_sizes"]:
        s = sc["batch_%d" % bs]
        lines.append("- BatchSize %d: CPU per record: broker %.2f µs, echo instances %.2f µs, "
                     "redis %.2f µs (baseline: redis %.2f µs); first XACK counted %.2f s after "
                     "start" % (bs, s["broker_cpu_us_per_record"],
                                s["instances_cpu_us_per_record"], s["redis_cpu_us_per_record"],
                                s["baseline_redis_cpu_us_per_record"], s["first_ack_s"]))
    if 1000 in res["batch_sizes"]:
        r = sc["batch_1000"]["ratio"]
        lines.append("- target Sluice ≥ 0.5× the raw loop at BatchSize 1000: %s (%.2f×)"
                     % ("met" if r >= 0.5 else "NOT met", r))
    lines.append("- fill: %.0f entries/s; whole run %.0f s; errors: %d"
                 % (res["fill"]["rps"], res["wall_s"], res["errors"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, type=Path, help="the CMake build directory")
    ap.add_argument("--entries", type=int, default=1000000,
                    help="stream entries per scenario (default 1000000)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of every scenario; the table shows medians (default 3)")
    ap.add_argument("--batch-sizes", default="100,1000",
                    help="comma-separated BatchSize values; the raw loop uses the same COUNT "
                    "(default 100,1000)")
    ap.add_argument("--window", type=int, default=1,
                    help="MaximumBatchingWindowInSeconds for BatchSize > 10 (the broker, as "
                    "Lambda, requires >= 1 there; default 1)")
    ap.add_argument("--body-size", type=int, default=50, help="bytes per entry body (default 50)")
    ap.add_argument("--memory-size", type=int, default=1769,
                    help="the echo function's MemorySize (1769 MB = one vCPU, the default)")
    ap.add_argument("--max-concurrency", type=int, default=0,
                    help="ScalingConfig.MaximumConcurrency (default: unset, the broker's default)")
    ap.add_argument("--visibility-timeout", type=int, default=30,
                    help="the stream's VisibilityTimeout in the mapping's URI (default 30, the "
                    "broker's default); a reclaimed entry counts as an error")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds one drain may take before it counts as failed (default 120)")
    ap.add_argument("--broker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the broker")
    ap.add_argument("--out", type=Path, help="JSON output (default BUILD/bench/redis.json)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = ap.parse_args()
    try:
        args.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    except ValueError:
        ap.error("--batch-sizes: expected comma-separated integers")
    if (args.entries < 1 or args.rounds < 1 or not args.batch_sizes
            or any(not 1 <= b <= 10000 for b in args.batch_sizes)
            or args.window < 1 or args.body_size < 16 or args.timeout <= 0):
        ap.error("--entries and --rounds must be >= 1, batch sizes 1..10000, --window >= 1, "
                 "--body-size >= 16, --timeout > 0")
    env = {}
    for kv in args.broker_env:
        k, eq, v = kv.partition("=")
        if not k or not eq:
            ap.error("--broker-env %s: expected NAME=VALUE" % kv)
        env[k] = v
    args.broker_env_list, args.broker_env = args.broker_env, env
    args.build = args.build.resolve()
    args.sluice = args.build / "sluice"
    args.echo_runtime = args.build / "examples" / "echo-runtime"
    args.raw = args.build / "bench" / "bench-redis-raw"
    args.fill = args.build / "bench" / "bench-redis-fill"
    out = args.out or args.build / "bench" / "redis.json"
    try:
        res = run(args)
    except (RuntimeError, AssertionError, OSError, subprocess.TimeoutExpired) as exc:
        log("failed: %s" % exc)
        return 1
    text = report(res)
    print(text)
    res["markdown"] = text
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    log("wrote %s" % out)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
