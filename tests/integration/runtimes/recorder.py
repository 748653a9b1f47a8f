"""A Runtime API client for event source mapping tests, run by the broker as a function.

Appends every event it receives, as one JSON line, to $RECORD_FILE, then answers by what the
records' bodies say (SQS-shaped events):
  a body containing "fail-all"    -> the invocation fails (function error)
  a body containing "fail-me"     -> that record is listed in batchItemFailures
  a body containing "bad-partial" -> an invalid partial response (unknown itemIdentifier)
  a body containing "sleep-ms:N"  -> sleeps N ms before answering
Everything else succeeds.
"""

import http.client
import json
import os
import re
import time

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
record_file = os.environ["RECORD_FILE"]
conn = http.client.HTTPConnection(host, int(port))


def call(method, path, body=None, headers=None):
    conn.request(method, "/2018-06-01" + path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


while True:
    status, hdrs, body = call("GET", "/runtime/invocation/next")
    rid = hdrs["lambda-runtime-aws-request-id"]
    event = json.loads(body)
    with open(record_file, "a") as f:
        f.write(json.dumps(event) + "\n")
    bodies = [r.get("body", "") for r in event.get("Records", [])]
    for b in bodies:
        m = re.search(r"sleep-ms:(\d+)", b)
        if m:
            time.sleep(int(m.group(1)) / 1000.0)
    if any("fail-all" in b for b in bodies):
        call("POST", "/runtime/invocation/%s/error" % rid,
             json.dumps({"errorMessage": "asked to fail", "errorType": "Error"}),
             {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
        continue
    if any("bad-partial" in b for b in bodies):
        answer = {"batchItemFailures": [{"itemIdentifier": "0-0"}]}
    else:
        answer = {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                        for r in event.get("Records", [])
                                        if "fail-me" in r.get("body", "")]}
    call("POST", "/runtime/invocation/%s/response" % rid, json.dumps(answer))
