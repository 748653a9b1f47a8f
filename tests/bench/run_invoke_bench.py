#!/usr/bin/python3
"""The invoke-path benchmark: sync Invoke through the broker and the Runtime API (C echo
runtime) against a trivial loopback HTTP server hit by the same client, plus async accepts/s.

    /usr/bin/python3 tests/bench/run_invoke_bench.py --build BUILD_DIR [--duration S]
        [--rounds N] [--async-duration S] [--memory-size MB] [--out FILE] [--state-dir DIR]
        [--keep] [--broker-env NAME=VALUE]...

Needs BUILD_DIR/sluice, BUILD_DIR/examples/echo-runtime, BUILD_DIR/bench/bench-http and
BUILD_DIR/bench/bench-server (cmake --build BUILD_DIR builds them all). Prints a Markdown
table and writes the same numbers as JSON to --out (default BUILD_DIR/bench/invoke.json).

It asserts nothing about speed: it is a benchmark, read tests/bench/README.md. It exits 1 when
any request failed (a wrong status, a dropped connection) or a process misbehaved, 2 on bad
arguments.
"""

import argparse
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from sluice_testlib import Broker, wait_for  # noqa: E402
from benchlib import children, log, proc_cpu_seconds, proc_status  # noqa: E402

FUNCTION = "echo"
INVOKE_PATH = "/2015-03-31/functions/%s/invocations" % FUNCTION
# Enough for the 32 sync clients with room to spare; it also caps how many instances the async
# phase may start for its backlog on this 2-core machine.
ACCOUNT_CONCURRENCY = 64
BODY_SIZE = 100
# The CPU that the pinned scenario puts every process on.
PIN_CPU = 0


def filesystem_of(path):
    """(fstype, mountpoint) of the mount holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("?", "")
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt, fstype = parts[1], parts[2]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
                best = (fstype, mnt)
    return best


def tasks(pid):
    """Thread ids of a process (the broker has helper threads), or [] if it is gone."""
    try:
        return [int(t) for t in os.listdir("/proc/%d/task" % pid)]
    except FileNotFoundError:
        return []


def set_affinity(pids, cpus):
    """Sets the CPU affinity of every thread of every pid; processes that died are skipped."""
    for pid in pids:
        for tid in tasks(pid):
            try:
                os.sched_setaffinity(tid, cpus)
            except (ProcessLookupError, PermissionError):
                pass


# ---------------------------------------------------------------------------------------------
# Processes

class BaselineServer:
    """bench-server on 127.0.0.1:0; its first stdout line is the port."""

    def __init__(self, exe):
        self.proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("bench-server did not print its port within 10 s")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    continue
                line += ch
        self.port = int(line.strip())
        self.url = "http://127.0.0.1:%d/echo" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def metrics(broker):
    """{name: value} for the echo function's samples on /metrics."""
    with urllib.request.urlopen(broker.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    suffix = '{function="%s"}' % FUNCTION
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.endswith(suffix):
            out[name[:-len(suffix)]] = float(value)
    return out


def bench_http(exe, url, concurrency, duration=None, requests=None, warmup=0, headers=(),
               expect=200, cpus=None):
    cmd = [str(exe), "--url", url, "--concurrency", str(concurrency), "--warmup", str(warmup),
           "--body-size", str(BODY_SIZE), "--expect-status", str(expect)]
    cmd += ["--duration", str(duration)] if duration else ["--requests", str(requests)]
    for h in headers:
        cmd += ["--header", h]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=(duration or 60) + 120,
                       preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    if p.stderr.strip():
        log("bench-http said: " + p.stderr.strip().replace("\n", "\n[bench]   "))
    if p.returncode != 0:
        raise RuntimeError("bench-http %s exited %d" % (" ".join(cmd), p.returncode))
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The scenarios

def warm_instances(args, broker, want):
    """Runs sync invocations at concurrency `want` until the broker holds `want` instances.
    Returns the number of failed requests on the way."""
    failed = []

    def warm():
        r = bench_http(args.bench_http, broker.url + INVOKE_PATH, want, requests=want * 20)
        failed.append(r["errors"])
        return metrics(broker).get("sluice_instances", 0) >= want
    wait_for(warm, timeout=60, interval=0, ignore_exceptions=False,
             what="%d warm echo instances" % want)
    return sum(failed)


def cpu_per_request(pid, fn):
    """Runs fn() (a bench_http call) and adds the server's CPU time per request to its result."""
    cpu0 = proc_cpu_seconds(pid)
    r = fn()
    r["server_cpu_us_per_req"] = ((proc_cpu_seconds(pid) - cpu0) * 1e6 / r["requests"]
                                  if r["requests"] else 0.0)
    return r


def measure_pair(args, broker, base, concurrency, cpus=None):
    """One round at one concurrency: baseline, then broker, same client and body. With cpus,
    the client, the server and (the caller's job) the broker and its instances share them."""
    warmup = max(200, concurrency * 10)
    b = cpu_per_request(base.proc.pid, lambda: bench_http(
        args.bench_http, base.url, concurrency, duration=args.duration, warmup=warmup,
        cpus=cpus))
    r = cpu_per_request(broker.pid, lambda: bench_http(
        args.bench_http, broker.url + INVOKE_PATH, concurrency, duration=args.duration,
        warmup=warmup, cpus=cpus))
    return b, r


def median_of(runs, key):
    return statistics.median(run[key] for run in runs)


def run(args):
    for exe in (args.sluice, args.echo_runtime, args.bench_http, args.bench_server):
        if not exe.exists():
            raise RuntimeError("%s is missing: build first (cmake --build %s)" % (exe, args.build))
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-", dir=args.state_dir))
    fstype, mnt = filesystem_of(work)
    log("work dir %s (%s on %s)" % (work, fstype, mnt))
    results = {"body_bytes": BODY_SIZE, "duration_s": args.duration, "rounds": args.rounds,
               "async_duration_s": args.async_duration,
               "memory_size": args.memory_size, "broker_env": args.broker_env_list,
               "cpus": os.cpu_count(), "state_fs": fstype, "scenarios": {}}
    errors = 0
    base = BaselineServer(args.bench_server)
    broker = Broker(work, binary=args.sluice, config={
        "Listen": "127.0.0.1:0",
        "StateDir": str(work / "state"),
        "AccountConcurrency": ACCOUNT_CONCURRENCY,
        "Functions": [{
            "FunctionName": FUNCTION,
            "Command": [str(args.echo_runtime)],
            "Handler": "echo.handler",
            "Timeout": 3,
            "MemorySize": args.memory_size,
        }],
    }, env=args.broker_env)
    try:
        broker.start()  # waits, with a deadline, for sluice.addr and an accepting port
        log("broker pid %d at %s, baseline at %s" % (broker.pid, broker.url, base.url))
        errors += warm_instances(args, broker, 32)
        log("32 instances warm")

        # Sync scenarios, interleaved so that slow drift hits baseline and broker alike.
        # "c1_pinned" puts the client, the baseline server, the broker and its instances on
        # one CPU: no cross-CPU wake-ups (which cost ~20-40 us each on a VM and make c=1 on
        # two CPUs bimodal), so it compares the CPU work of one round trip.
        all_cpus = os.sched_getaffinity(0)
        pin = {PIN_CPU} if PIN_CPU in all_cpus and len(all_cpus) > 1 else None
        names = ["c1", "c32"] + (["c1_pinned"] if pin else [])
        rounds = {n: ([], []) for n in names}
        for rnd in range(args.rounds):
            for name in names:
                c = 1 if name.startswith("c1") else 32
                cpus = pin if name == "c1_pinned" else None
                if cpus:
                    set_affinity([base.proc.pid, broker.pid] + children(broker.pid), cpus)
                try:
                    b, r = measure_pair(args, broker, base, c, cpus)
                finally:
                    if cpus:
                        set_affinity([base.proc.pid, broker.pid] + children(broker.pid),
                                     all_cpus)
                rounds[name][0].append(b)
                rounds[name][1].append(r)
                errors += (b["errors"] + r["errors"] + b.get("warmup_errors", 0)
                           + r.get("warmup_errors", 0))
                log("round %d %s: baseline %.0f rps p50 %.0f us | broker %.0f rps p50 %.0f us"
                    % (rnd + 1, name, b["rps"], b["p50_us"], r["rps"], r["p50_us"]))
        m = metrics(broker)
        results["instances_after_sync"] = int(m.get("sluice_instances", 0))
        results["cold_starts_after_sync"] = int(m.get("sluice_cold_starts_total", 0))
        results["broker_peak_rss_kb_after_sync"] = proc_status(broker.pid, "VmHWM")

        for name, (bs, rs) in rounds.items():
            row = {"concurrency": 1 if name.startswith("c1") else 32,
                   "pinned_cpu": PIN_CPU if name == "c1_pinned" else None,
                   "baseline_runs": bs, "broker_runs": rs}
            for k in ("rps", "p50_us", "p90_us", "p99_us", "max_us", "server_cpu_us_per_req"):
                row[k] = median_of(rs, k)
                row["baseline_" + k] = median_of(bs, k)
            row["ratio_p50"] = row["p50_us"] / row["baseline_p50_us"]
            row["ratio_rps"] = row["rps"] / row["baseline_rps"]
            results["scenarios"]["sync_" + name] = row

        # Async: every 202 is sent from the store's durable (fdatasync'ed) callback.
        before = metrics(broker).get("sluice_async_accepted_total", 0)
        a = cpu_per_request(broker.pid, lambda: bench_http(
            args.bench_http, broker.url + INVOKE_PATH, 32, duration=args.async_duration,
            warmup=320,
            headers=("X-Amz-Invocation-Type: Event",), expect=202))
        m = metrics(broker)
        accepted = m.get("sluice_async_accepted_total", 0) - before
        ok = a["requests"] - a["errors"] + 320 - a.get("warmup_errors", 0)
        a["broker_accepted_delta"] = int(accepted)
        a["client_202s_incl_warmup"] = ok
        a["instances_after"] = int(m.get("sluice_instances", 0))
        a["queue_depth_after"] = int(m.get("sluice_async_queue_depth", 0))
        results["scenarios"]["async_c32"] = a
        errors += a["errors"] + a.get("warmup_errors", 0)
        if accepted < ok:
            log("the broker counted %d async accepts but the client got %d 202s" % (accepted, ok))
            errors += 1

        kids = children(broker.pid)
        results["broker_peak_rss_kb"] = proc_status(broker.pid, "VmHWM")
        results["instances_at_end"] = len(kids)
        results["instances_peak_rss_kb_sum"] = sum(proc_status(k, "VmHWM") or 0 for k in kids)
        results["broker_plus_instances_peak_rss_kb"] = (results["broker_peak_rss_kb"]
                                                        + results["instances_peak_rss_kb_sum"])
    finally:
        problems = broker.close()
        base.stop()
        for p in problems:
            log("problem: " + p)
            errors += 1
        if args.keep:
            log("kept %s (broker log: %s)" % (work, broker.log_path))
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["errors"] = errors
    return results


# ---------------------------------------------------------------------------------------------
# Report

def report(res):
    sc = res["scenarios"]
    lines = [
        "Invoke path: %d-byte JSON body, echo runtime with MemorySize %d, %d round(s) of %g s "
        "per sync scenario (medians), %d CPUs%s"
        % (res["body_bytes"], res["memory_size"], res["rounds"], res["duration_s"], res["cpus"],
           (", broker env " + " ".join(res["broker_env"])) if res["broker_env"] else ""),
        "",
        "| scenario | rps | p50 µs | p99 µs | baseline rps | baseline p50 | baseline p99 "
        "| ratio p50 (broker/baseline) | ratio rps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("sync_c1", "sync c=1"), ("sync_c32", "sync c=32"),
                        ("sync_c1_pinned", "sync c=1, all on CPU %d" % PIN_CPU)):
        s = sc.get(name)
        if s is None:
            continue
        lines.append("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f× | %.2f× |"
                     % (label, s["rps"], s["p50_us"], s["p99_us"], s["baseline_rps"],
                        s["baseline_p50_us"], s["baseline_p99_us"], s["ratio_p50"],
                        s["ratio_rps"]))
    a = sc["async_c32"]
    lines.append("| async accept c=32 (202 after fdatasync, %g s) | %.0f | %.0f | %.0f "
                 "| — | — | — | — | — |"
                 % (res["async_duration_s"], a["rps"], a["p50_us"], a["p99_us"]))
    cpu = ", ".join("%s %.0f µs (baseline server %.0f µs)"
                    % (n.replace("sync_", "sync "), sc[n]["server_cpu_us_per_req"],
                       sc[n]["baseline_server_cpu_us_per_req"])
                    for n in ("sync_c1", "sync_c32", "sync_c1_pinned") if n in sc)
    lines += [
        "",
        "- broker peak RSS (VmHWM): %d kB (%d kB after the sync scenarios)"
        % (res["broker_peak_rss_kb"], res["broker_peak_rss_kb_after_sync"]),
        "- broker + its %d instances, sum of their VmHWM: %d kB"
        % (res["instances_at_end"], res["broker_plus_instances_peak_rss_kb"]),
        "- async accepts/s with 32 clients: %.0f (store on %s; broker counted %d accepts, "
        "client got %d 202s incl. warm-up; afterwards queue depth %d, %d instances)"
        % (a["rps"], res["state_fs"], a["broker_accepted_delta"], a["client_202s_incl_warmup"],
           a["queue_depth_after"], a["instances_after"]),
        "- broker CPU per request (utime+stime): %s, async %.0f µs"
        % (cpu, a["server_cpu_us_per_req"]),
        "- target p50 ratio ≤ 3×: %s"
        % ", ".join("%s %s" % (n.replace("sync_", ""),
                               "met" if sc[n]["ratio_p50"] <= 3.0 else "NOT met")
                    for n in ("sync_c1", "sync_c32", "sync_c1_pinned") if n in sc),
        "- errors: %d" % res["errors"],
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, type=Path, help="the CMake build directory")
    ap.add_argument("--duration", type=float, default=2.0,
                    help="seconds per measured sync run (default 2)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds of the sync scenarios; the table shows medians (default 5)")
    ap.add_argument("--async-duration", type=float, default=5.0,
                    help="seconds of the async accept run (default 5)")
    ap.add_argument("--memory-size", type=int, default=1769,
                    help="the echo function's MemorySize; CPU is capped in proportion (1769 MB "
                    "= one vCPU, the default, so the cap never binds; 128 throttles c=1)")
    ap.add_argument("--broker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the broker, e.g. EVENT_EPOLL_USE_CHANGELIST=1")
    ap.add_argument("--out", type=Path, help="JSON output (default BUILD/bench/invoke.json)")
    ap.add_argument("--state-dir", help="parent of the temporary work directory "
                    "(default: $TMPDIR); put it on the disk whose fsync you want measured")
    ap.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = ap.parse_args()
    if args.duration <= 0 or args.async_duration <= 0 or args.rounds < 1:
        ap.error("--duration and --async-duration must be > 0, --rounds >= 1")
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
    args.bench_http = args.build / "bench" / "bench-http"
    args.bench_server = args.build / "bench" / "bench-server"
    out = args.out or args.build / "bench" / "invoke.json"
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
