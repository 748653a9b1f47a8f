"""A deliberately naughty Runtime API client, run by the broker as a function's Command: it
probes the Runtime API's error answers before answering its invocation, and answers with what
it saw, so the test can check the status codes Lambda's Runtime API uses."""

import http.client
import json
import os

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")


def call(method, path, body=None, headers=None):
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request(method, "/2018-06-01" + path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


while True:
    status, hdrs, event = call("GET", "/runtime/invocation/next")
    rid = hdrs["lambda-runtime-aws-request-id"]
    seen = {"next_status": status, "headers": hdrs, "event": event.decode()}
    s, _, b = call("POST", "/runtime/invocation/not-the-id/response", b"{}")
    seen["wrong_id"] = [s, json.loads(b)]
    s, _, b = call("POST", "/runtime/init/error", b"{}",
                   {"Lambda-Runtime-Function-Error-Type": "Runtime.Late"})
    seen["late_init_error"] = [s, json.loads(b)]
    s, _, b = call("GET", "/runtime/invocation/nowhere")
    seen["unknown_path"] = s
    s, _, b = call("GET", "/runtime/invocation/next")
    seen["second_next"] = s
    if json.loads(event or b"{}").get("fail"):
        s, _, b = call("POST", "/runtime/invocation/%s/error" % rid, b"not json at all",
                       {"Lambda-Runtime-Function-Error-Type": "Custom.Oops"})
    else:
        s, _, b = call("POST", "/runtime/invocation/%s/response" % rid,
                       json.dumps(seen).encode())
    # Answering twice is refused: the invocation is over.
    s2, _, _ = call("POST", "/runtime/invocation/%s/response" % rid, b"{}")
    with open(os.environ["RAW_RUNTIME_LOG"], "a") as f:
        f.write(json.dumps({"answer": s, "again": s2}) + "\n")
