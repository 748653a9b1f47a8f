"""schemas/config.schema.json against the example configs and against hostile documents.

Every examples/*.yaml must validate; a set of documents the C parser refuses must fail the
schema too (so the schema is not vacuous), and a set it accepts must pass. The key names in
the schema and in broker/broker_config.c's key tables are compared, so neither drifts.

The source root is $SLUICE_SRC, or the repository this file sits in.
"""

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

SRC = Path(os.environ.get("SLUICE_SRC") or Path(__file__).resolve().parents[2])
SCHEMA_PATH = SRC / "schemas" / "config.schema.json"
EXAMPLES = sorted((SRC / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors_of(validator, text):
    doc = yaml.safe_load(text)
    return [e.message for e in validator.iter_errors(doc)]


def test_examples_exist():
    names = [p.name for p in EXAMPLES]
    assert "sluice.yaml" in names, names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(validator, path):
    doc = yaml.safe_load(path.read_text())
    errs = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errs, "\n".join("%s: %s" % ("/".join(map(str, e.path)), e.message) for e in errs)


FN = "Functions:\n  - FunctionName: f\n    Command: [run]\n"


def eic(body):
    return FN + "    EventInvokeConfig:\n" + "".join("      " + l + "\n" for l in body)


def dest(uri):
    return eic(["DestinationConfig:", "  OnFailure: {Destination: '%s'}" % uri])


def env(variables):
    return FN + "    Environment:\n      Variables: " + variables + "\n"


VALID = {
    "empty-functions": "Functions: []\n",
    "no-functions": "Listen: 127.0.0.1:0\n",
    "minimal": FN,
    "localhost": "Listen: localhost:9070\n",
    "ipv6-loopback": "Listen: '[::1]:9070'\n",
    "remote-with-flag": "Listen: 0.0.0.0:9070\nAllowNonLoopbackListen: true\n",
    "fractional-delay": eic(["RetryBaseDelaySeconds: 0.2"]),
    "file-abs": dest("file:///var/lib/sluice/dlq.jsonl"),
    "file-rel": dest("file://./dlq.jsonl"),
    "file-parent": dest("file://../dlq.jsonl"),
    "redis": dest("redis://127.0.0.1:6379/dlq"),
    "redis-db": dest("redis://cache.local:6380/3/dlq"),
    "function": dest("function:f"),
    "empty-destination-map": eic(["DestinationConfig: {OnSuccess: {}}"]),
    "env-scalars": env("{PORT: 8080, DEBUG: true, NAME: x, EMPTY: ''}"),
    "all-function-keys": FN + "".join("    %s\n" % l for l in [
        "Description: d", "Runtime: provided.al2023", "Handler: a.b", "CodeUri: .",
        "Timeout: 900", "MemorySize: 10240", "ReservedConcurrentExecutions: 0",
        "ProvisionedConcurrency: 0", "InstanceIdleTimeoutSeconds: 1.5"]),
    "top-level": "StateDir: ../state\nAccountConcurrency: 100000\nLogLevel: ERROR\n",
}

INVALID = {
    "unknown-top-key": "Listn: 127.0.0.1:1\n",
    "event-source-mappings": "EventSourceMappings: []\n",
    "unknown-function-key": FN + "    Timeoutt: 3\n",
    "unknown-eic-key": eic(["MaxRetries: 1"]),
    "unknown-destination-key": eic(["DestinationConfig: {OnFailure: {Arn: x}}"]),
    "functions-map": "Functions: {FunctionName: f}\n",
    "function-list": "Functions: [[f]]\n",
    "missing-name": "Functions:\n  - Command: [run]\n",
    "missing-command": "Functions:\n  - FunctionName: f\n",
    "empty-command": "Functions:\n  - FunctionName: f\n    Command: []\n",
    "command-string": "Functions:\n  - FunctionName: f\n    Command: run\n",
    "command-empty-program": "Functions:\n  - FunctionName: f\n    Command: ['']\n",
    "command-number": "Functions:\n  - FunctionName: f\n    Command: [run, 3]\n",
    "bad-name": "Functions:\n  - FunctionName: a.b\n    Command: [run]\n",
    "long-name": "Functions:\n  - FunctionName: %s\n    Command: [run]\n" % ("a" * 65),
    "timeout-string": FN + "    Timeout: '3'\n",
    "timeout-high": FN + "    Timeout: 901\n",
    "timeout-low": FN + "    Timeout: 0\n",
    "memory-low": FN + "    MemorySize: 127\n",
    "memory-high": FN + "    MemorySize: 10241\n",
    "reserved-negative": FN + "    ReservedConcurrentExecutions: -1\n",
    "provisioned-negative": FN + "    ProvisionedConcurrency: -1\n",
    "idle-low": FN + "    InstanceIdleTimeoutSeconds: 0.5\n",
    "idle-high": FN + "    InstanceIdleTimeoutSeconds: 86401\n",
    "handler-space": FN + "    Handler: 'a b'\n",
    "handler-empty": FN + "    Handler: ''\n",
    "description-long": FN + "    Description: %s\n" % ("d" * 257),
    "retries-high": eic(["MaximumRetryAttempts: 3"]),
    "age-low": eic(["MaximumEventAgeInSeconds: 59"]),
    "age-high": eic(["MaximumEventAgeInSeconds: 21601"]),
    "delay-zero": eic(["RetryBaseDelaySeconds: 0"]),
    "delay-high": eic(["RetryBaseDelaySeconds: 3601"]),
    "dest-sqs": dest("sqs://queue"),
    "dest-arn": dest("arn:aws:sqs:us-east-1:123456789012:dlq"),
    "dest-file-relative": dest("file://dlq.jsonl"),
    "dest-file-dir": dest("file:///tmp/"),
    "dest-redis-no-port": dest("redis://localhost/s"),
    "dest-redis-no-stream": dest("redis://localhost:6379/"),
    "dest-redis-bad-db": dest("redis://localhost:6379/x/s"),
    "dest-function-bad": dest("function:a b"),
    "dest-empty": dest(""),
    "env-reserved": env("{AWS_REGION: x}"),
    "env-reserved-handler": env("{_HANDLER: x}"),
    "env-short-name": env("{X: x}"),
    "env-bad-name": env("{1AB: x}"),
    "env-list-value": env("{AB: [x]}"),
    "env-null-value": env("{AB: null}"),
    "env-list": env("[AB]"),
    "listen-remote": "Listen: 0.0.0.0:9070\n",
    "listen-remote-flag-false": "Listen: 10.0.0.1:9070\nAllowNonLoopbackListen: false\n",
    "listen-no-port": "Listen: 127.0.0.1\n",
    "listen-port-high": "Listen: 127.0.0.1:65536\n",
    "listen-bad-octet": "Listen: 127.0.0.256:1\n",
    "flag-not-bool": "AllowNonLoopbackListen: 1\n",
    "account-low": "AccountConcurrency: 0\n",
    "account-high": "AccountConcurrency: 100001\n",
    "account-string": "AccountConcurrency: '10'\n",
    "log-level": "LogLevel: TRACE\n",
    "state-dir-empty": "StateDir: ''\n",
    "not-a-map": "- a\n",
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_document(validator, name):
    assert errors_of(validator, VALID[name]) == []


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_document(validator, name):
    assert errors_of(validator, INVALID[name]), "schema accepts:\n" + INVALID[name]


def schema_keys(node, out):
    """Every property name the schema declares, at any depth."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            out.update(props)
        for v in node.values():
            schema_keys(v, out)
    elif isinstance(node, list):
        for v in node:
            schema_keys(v, out)
    return out


def test_schema_keys_match_parser_tables():
    schema = json.loads(SCHEMA_PATH.read_text())
    source = (SRC / "broker" / "broker_config.c").read_text()
    parser = set(re.findall(r'\.name = "([A-Za-z]+)"', source))
    # The parser names EventSourceMappings only to refuse it with a clear message.
    parser.discard("EventSourceMappings")
    assert schema_keys(schema, set()) == parser
