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


ARN = "redis://127.0.0.1:6379/orders"


def esm(*lines, arn=ARN):
    """A document with function f and one mapping of it on arn, plus the given keys."""
    return (FN + "EventSourceMappings:\n  - FunctionName: f\n    EventSourceArn: '%s'\n" % arn +
            "".join("    " + l + "\n" for l in lines))


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
    "esm-empty-list": FN + "EventSourceMappings: []\n",
    "esm-minimal": esm(),
    "esm-issue": esm("BatchSize: 10", "MaximumBatchingWindowInSeconds: 0",
                     "FunctionResponseTypes: [ReportBatchItemFailures]",
                     "ScalingConfig: {MaximumConcurrency: 50}", "Enabled: true",
                     arn="redis://127.0.0.1:6379/orders?VisibilityTimeout=30"
                         "&maxReceiveCount=5&deadLetterTarget=orders-dlq"),
    "esm-big-batch-with-window": esm("BatchSize: 10000", "MaximumBatchingWindowInSeconds: 1"),
    "esm-window-max": esm("MaximumBatchingWindowInSeconds: 300"),
    "esm-no-response-types": esm("FunctionResponseTypes: []", "ScalingConfig: {}"),
    "esm-concurrency-range": esm("ScalingConfig: {MaximumConcurrency: 2}"),
    "esm-disabled-uuid": esm("Enabled: false", "UUID: 6BA7B810-9DAD-51D1-80B4-00C04FD430C8"),
    "esm-no-port-db": esm(arn="redis://cache.local/3/orders"),
    "esm-password": esm(arn="redis://:p%40ss%2Fw:rd@127.0.0.1:6379/orders"),
    "esm-user-password": esm(arn="redis://app:secret@127.0.0.1/orders"),
    "esm-ipv6": esm(arn="redis://[::1]:6380/orders"),
    "esm-stream-escape": esm(arn="redis://h:1/a%2Fb{tag}"),
    "esm-all-query-keys": esm(arn="redis://h/0/s?VisibilityTimeout=43200&maxReceiveCount=1000"
                                  "&deadLetterTarget=s-dlq&ConsumerGroup=g%201&tls=false"),
    "esm-visibility-zero": esm(arn="redis://h/s?VisibilityTimeout=0"),
}

INVALID = {
    "unknown-top-key": "Listn: 127.0.0.1:1\n",
    "esm-not-a-list": FN + "EventSourceMappings: {FunctionName: f}\n",
    "esm-missing-arn": FN + "EventSourceMappings:\n  - FunctionName: f\n",
    "esm-missing-function": FN + "EventSourceMappings:\n  - EventSourceArn: '%s'\n" % ARN,
    "esm-unknown-key": esm("BatchSise: 5"),
    "esm-batch-low": esm("BatchSize: 0"),
    "esm-batch-high": esm("BatchSize: 10001", "MaximumBatchingWindowInSeconds: 1"),
    "esm-batch-no-window": esm("BatchSize: 11"),
    "esm-batch-window-zero": esm("BatchSize: 100", "MaximumBatchingWindowInSeconds: 0"),
    "esm-window-high": esm("MaximumBatchingWindowInSeconds: 301"),
    "esm-window-fraction": esm("MaximumBatchingWindowInSeconds: 0.5"),
    "esm-enabled-string": esm("Enabled: 'yes'"),
    "esm-response-type": esm("FunctionResponseTypes: [ReportItemFailures]"),
    "esm-response-types-two": esm(
        "FunctionResponseTypes: [ReportBatchItemFailures, ReportBatchItemFailures]"),
    "esm-concurrency-low": esm("ScalingConfig: {MaximumConcurrency: 1}"),
    "esm-concurrency-high": esm("ScalingConfig: {MaximumConcurrency: 1001}"),
    "esm-scaling-unknown": esm("ScalingConfig: {MinimumConcurrency: 2}"),
    "esm-uuid-short": esm("UUID: 6ba7b810-9dad-51d1-80b4-00c04fd430c"),
    "esm-starting-position": esm("StartingPosition: LATEST"),
    "esm-retries": esm("MaximumRetryAttempts: 2"),
    "esm-bisect": esm("BisectBatchOnFunctionError: true"),
    "esm-destination": esm("DestinationConfig: {OnFailure: {Destination: 'redis://h:1/d'}}"),
    "esm-topics": esm("Topics: [t]"),
    "esm-kafka": esm(arn="kafka://broker:9092/orders"),
    "esm-postgres": esm(arn="postgres://db/slot"),
    "esm-sqs-arn": esm(arn="arn:aws:sqs:us-east-1:123456789012:orders"),
    "esm-no-stream": esm(arn="redis://127.0.0.1:6379/"),
    "esm-no-path": esm(arn="redis://127.0.0.1:6379"),
    "esm-bad-port": esm(arn="redis://127.0.0.1:65536/s"),
    "esm-port-zero": esm(arn="redis://127.0.0.1:0/s"),
    "esm-bad-db": esm(arn="redis://h/x/s"),
    "esm-db-leading-zero": esm(arn="redis://h/01/s"),
    "esm-three-segments": esm(arn="redis://h/0/s/t"),
    "esm-space": esm(arn="redis://h/a b"),
    "esm-hash": esm(arn="redis://h/a#b"),
    "esm-bad-escape": esm(arn="redis://h/a%2"),
    "esm-nul-escape": esm(arn="redis://h/a%00"),
    "esm-user-no-password": esm(arn="redis://user@h/s"),
    "esm-empty-password": esm(arn="redis://user:@h/s"),
    "esm-unknown-query": esm(arn="redis://h/s?foo=1"),
    "esm-query-case": esm(arn="redis://h/s?visibilityTimeout=1"),
    "esm-empty-query": esm(arn="redis://h/s?"),
    "esm-stray-amp": esm(arn="redis://h/s?VisibilityTimeout=1&"),
    "esm-query-no-value": esm(arn="redis://h/s?VisibilityTimeout"),
    "esm-visibility-high": esm(arn="redis://h/s?VisibilityTimeout=43201"),
    "esm-visibility-leading-zero": esm(arn="redis://h/s?VisibilityTimeout=030"),
    "esm-receives-zero": esm(arn="redis://h/s?maxReceiveCount=0&deadLetterTarget=d"),
    "esm-receives-high": esm(arn="redis://h/s?maxReceiveCount=1001&deadLetterTarget=d"),
    "esm-receives-alone": esm(arn="redis://h/s?maxReceiveCount=5"),
    "esm-dlq-alone": esm(arn="redis://h/s?deadLetterTarget=d"),
    "esm-dlq-is-source": esm(arn="redis://h/s?maxReceiveCount=5&deadLetterTarget=s"),
    "esm-duplicate-query-key": esm(arn="redis://h/s?tls=false&tls=false"),
    "esm-tls-true": esm(arn="redis://h/s?tls=true"),
    "esm-tls-other": esm(arn="redis://h/s?tls=yes"),
    "esm-empty-group": esm(arn="redis://h/s?ConsumerGroup="),
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


REFUSED_ESM_KEYS = ["StartingPosition", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds",
                    "BisectBatchOnFunctionError", "ParallelizationFactor", "DestinationConfig",
                    "SelfManagedEventSource", "Topics", "FilterCriteria", "Tags"]


@pytest.mark.parametrize("key", REFUSED_ESM_KEYS)
def test_refused_mapping_key(validator, key):
    assert errors_of(validator, esm("%s: x" % key)), key


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
    assert schema_keys(schema, set()) == parser
    # Lambda's mapping keys the parser refuses by name (REFUSED("Key", why)) are left out of
    # the mapping's properties, so additionalProperties refuses them too, and its description
    # lists them.
    refused = set(re.findall(r'REFUSED\("([A-Za-z]+)"', source))
    assert set(REFUSED_ESM_KEYS) <= refused
    mapping = schema["$defs"]["EventSourceMapping"]
    assert not refused & set(mapping["properties"])
    assert all(k in mapping["description"] for k in refused), refused
