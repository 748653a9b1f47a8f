"""The sluice command line: help, version, configuration errors refused at start-up."""

import subprocess

from sluice_testlib import runtime_path, sluice_bin


def run(*args, timeout=30):
    return subprocess.run([str(sluice_bin()), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0 and "serve --config FILE" in r.stdout
    r = run("serve", "--help")
    assert r.returncode == 0
    for word in ("--config", "--log-level", "SIGTERM", "sluice.addr"):
        assert word in r.stdout, word
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("sluice ")
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = run("serve")
    assert r.returncode == 2 and "--config FILE is required" in r.stderr


def write(tmp_path, text):
    p = tmp_path / "sluice.yaml"
    p.write_text(text)
    return p


def test_config_errors_name_file_line_and_reason(tmp_path):
    echo = runtime_path("echo")
    cases = [
        ("Listen: 127.0.0.1:0\nFunctions:\n  - FunctionName: a\n    Command: [%s]\n"
         "    Timeout: 901\n" % echo, ":5:", "901 is out of range 1..900"),
        ("Listen: 127.0.0.1:0\nBogus: 1\n", ":2:", "Bogus"),
        ("Listen: 127.0.0.1:0\nFunctions:\n  - FunctionName: a\n    Command: [%s]\n"
         "    MemorySize: \"128\"\n" % echo, ":5:", "MemorySize"),
        ("Listen: 127.0.0.1:0\nFunctions:\n  - Command: [%s]\n" % echo, ":3:", "FunctionName"),
        ("Listen: 127.0.0.1:0\nFunctions:\n  - FunctionName: a\n    Command: [%s]\n"
         "    EventInvokeConfig: {MaximumRetryAttempts: 3}\n" % echo, ":5:",
         "MaximumRetryAttempts"),
        ("Listen: 0.0.0.0:9070\n", ":1:", "loopback"),
        ("Functions: [\n", ":", "yaml"),
    ]
    for text, line, reason in cases:
        p = write(tmp_path, text)
        r = run("serve", "--config", str(p))
        assert r.returncode == 2, (text, r.stderr)
        assert str(p) + line in r.stderr, (text, r.stderr)
        assert reason.lower() in r.stderr.lower(), (text, r.stderr)
        # Nothing was started: no state directory, no address file.
        assert not (tmp_path / ".sluice" / "sluice.addr").exists()


def test_missing_config_file(tmp_path):
    r = run("serve", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert "nope.yaml" in r.stderr


ISSUE_EXAMPLE = """\
Listen: 127.0.0.1:9070
StateDir: ./.sluice
AccountConcurrency: 1000
Functions:
  - FunctionName: echo
    CodeUri: ./examples/echo
    Command: ["./build/examples/echo-runtime"]
    Handler: echo.handler
    Timeout: 3
    MemorySize: 128
    Environment:
      Variables: {GREETING: hello}
    ReservedConcurrentExecutions: 4
    EventInvokeConfig:
      MaximumRetryAttempts: 2
      MaximumEventAgeInSeconds: 3600
      DestinationConfig:
        OnFailure: {Destination: "file:///tmp/echo-failures.jsonl"}
        OnSuccess: {Destination: "file:///tmp/echo-successes.jsonl"}
"""


def test_issue_example_works_as_written(tmp_path):
    """The configuration from the issue, verbatim but for a free port, in a folder laid out
    like the repository (build/ and examples/ beside the file)."""
    from sluice_testlib import build_dir, free_port, http, invoke, repo_root, wait_for
    (tmp_path / "build").symlink_to(build_dir())
    (tmp_path / "examples").symlink_to(repo_root() / "examples")
    port = free_port()
    cfg = write(tmp_path, ISSUE_EXAMPLE.replace("9070", str(port)))
    proc = subprocess.Popen([str(sluice_bin()), "serve", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / ".sluice" / "sluice.addr").exists(), timeout=30,
                 what="the broker to listen")
        r = invoke("http://127.0.0.1:%d" % port, "echo", {"as": "written"})
        assert r.status == 200 and r.json() == {"as": "written"}
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
