"""The Runtime API as the broker serves it to each instance, probed by a raw client."""

import base64
import json
import re
import time

from sluice_testlib import invoke, repo_root, wait_for


def raw_fn(tmp_path, name="raw", timeout=5):
    return {
        "FunctionName": name,
        "Command": ["/usr/bin/python3",
                    str(repo_root() / "tests" / "integration" / "runtimes" / "raw_runtime.py")],
        "Handler": "raw.handler",
        "Timeout": timeout,
        "Environment": {"Variables": {"RAW_RUNTIME_LOG": str(tmp_path / "raw.log")}},
    }


def test_runtime_api_headers_and_status_codes(broker_factory, tmp_path):
    b = broker_factory({"Functions": [raw_fn(tmp_path)]})
    ctx = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    before = time.time() * 1000
    r = invoke(b, "raw", {"hello": 1}, client_context=ctx,
               headers={"X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"})
    assert r.status == 200, r
    seen = r.json()
    h = seen["headers"]
    assert seen["next_status"] == 200
    assert seen["event"] == json.dumps({"hello": 1})
    assert h["lambda-runtime-aws-request-id"] == r.headers["x-amzn-requestid"]
    deadline = int(h["lambda-runtime-deadline-ms"])
    assert before + 4000 < deadline < time.time() * 1000 + 5000 + 1000
    assert re.fullmatch(r"arn:aws:lambda:[a-z0-9-]+:\d{12}:function:raw",
                        h["lambda-runtime-invoked-function-arn"])
    assert h["lambda-runtime-trace-id"].startswith("Root=1-5759e988-")
    assert json.loads(h["lambda-runtime-client-context"]) == {"custom": {"k": "v"}}
    assert h["content-type"] == "application/json"
    assert seen["wrong_id"][0] == 400
    assert seen["wrong_id"][1]["errorType"] == "InvalidRequestID"
    assert seen["late_init_error"][0] == 403
    assert seen["late_init_error"][1]["errorType"] == "InvalidStateTransition"
    assert seen["unknown_path"] == 404
    assert seen["second_next"] == 403  # the invocation in hand must be answered first
    answers = wait_for(lambda: (tmp_path / "raw.log").exists() and
                       [json.loads(x) for x in (tmp_path / "raw.log").read_text().splitlines()],
                       what="the runtime's own log")
    assert answers[0] == {"answer": 202, "again": 400}


def test_error_body_that_is_not_json_is_wrapped(broker_factory, tmp_path):
    b = broker_factory({"Functions": [raw_fn(tmp_path)]})
    r = invoke(b, "raw", {"fail": True})
    assert r.status == 200
    assert r.headers["x-amz-function-error"] == "Unhandled"
    assert r.json() == {"errorMessage": "not json at all", "errorType": "Custom.Oops"}
