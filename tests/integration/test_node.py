"""Real third-party clients: a Node.js handler under aws-lambda-ric (npm), and the AWS SDK for
JavaScript v3 (@aws-sdk/client-lambda) driving Invoke. tests/node/setup.sh installs both into
$SLUICE_NODE_CACHE; tests/run.sh runs it before ctest."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sluice_testlib import invoke, repo_root, runtime_path


def node_cache():
    cache = Path(os.environ.get("SLUICE_NODE_CACHE", repo_root() / ".cache" / "node"))
    ric = cache / "node_modules" / "aws-lambda-ric" / "bin" / "index.mjs"
    if not ric.exists():
        pytest.fail("aws-lambda-ric is not installed in %s: run tests/node/setup.sh "
                    "(tests/run.sh does)" % cache, pytrace=False)
    if not shutil.which("node"):
        pytest.fail("node is not on PATH", pytrace=False)
    return cache


def ric_function(name, handler, cache):
    return {
        "FunctionName": name,
        "Command": [shutil.which("node"),
                    str(cache / "node_modules" / "aws-lambda-ric" / "bin" / "index.mjs"),
                    handler],
        "CodeUri": str(repo_root() / "tests" / "node" / "app"),
        "Handler": handler,
        "Timeout": 10,
        "MemorySize": 512,
        "Environment": {"Variables": {"AWS_LAMBDA_NODEJS_USE_ALTERNATIVE_CLIENT_1": "true"}},
    }


def test_node_handler_under_aws_lambda_ric(broker_factory):
    cache = node_cache()
    b = broker_factory({"Functions": [ric_function("node", "index.handler", cache),
                                      ric_function("nodefail", "fail.handler", cache)]})
    r = invoke(b, "node", {"from": "python"}, timeout=60)
    assert r.status == 200, (r, b.log_text()[-2000:])
    body = r.json()
    assert body["ok"] is True
    assert body["event"] == {"from": "python"}
    assert body["requestId"] == r.headers["x-amzn-requestid"]
    assert body["fn"] == "node"
    # Warm: the second call reuses the instance.
    r2 = invoke(b, "node", [1, 2, 3])
    assert r2.json()["event"] == [1, 2, 3]
    r3 = invoke(b, "nodefail", {"x": 1}, timeout=60)
    assert r3.status == 200 and r3.headers["x-amz-function-error"] == "Unhandled"
    err = r3.json()
    assert err["errorType"] == "TypeError"
    assert "bad event" in err["errorMessage"]


def test_aws_sdk_for_javascript_drives_invoke(broker_factory):
    cache = node_cache()
    b = broker_factory({"Functions": [
        {"FunctionName": "echo", "Command": [str(runtime_path("echo"))],
         "Handler": "echo.handler"},
        {"FunctionName": "fail", "Command": [str(runtime_path("fail"))],
         "Handler": "fail.handler"},
        {"FunctionName": "single", "Command": [str(runtime_path("sleep"))],
         "Handler": "sleep.handler", "ReservedConcurrentExecutions": 1},
    ]})
    env = dict(os.environ, SLUICE_NODE_CACHE=str(cache))
    p = subprocess.run(["node", str(repo_root() / "tests" / "node" / "sdk_invoke.mjs"), b.url],
                       capture_output=True, text=True, timeout=120, env=env)
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "all SDK checks passed" in p.stdout
