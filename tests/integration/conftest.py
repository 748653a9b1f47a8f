"""pytest fixtures for Sluice's integration tests. Helpers live in sluice_testlib:

    from sluice_testlib import wait_for, http, invoke, free_port, runtime_path

Fixtures:
    redis_server    (session) a real redis-server on 127.0.0.1:<free port>: .host .port .url
                    .cmd(*args) .cmd_raw(*args) .client()
    kafka_server    (session) a real single-node KRaft Apache Kafka broker on 127.0.0.1:<free
                    port>: .bootstrap .create_topic() .produce() .produce_n() .consume()
                    .offsets() .committed() (kafka_server.py)
    broker_factory  (function) make(config=None, *, env=None, start=True, check_exit=True, ...)
                    -> a started sluice_testlib.Broker; all are stopped at teardown, and the tail
                    of each broker's log is attached to the report of a failed test.
    sluice_bin      the binary under test ($SLUICE_BIN), failing loudly when it is missing.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sluice_testlib  # noqa: E402
from sluice_testlib import Broker, RedisServer, tail  # noqa: E402
from kafka_server import KafkaServer  # noqa: E402


def pytest_report_header(config):
    return ["sluice: SLUICE_BIN=%s SLUICE_BUILD=%s SLUICE_SRC=%s timeout-scale=%g"
            % (sluice_testlib.sluice_bin(), sluice_testlib.build_dir(),
               sluice_testlib.repo_root(), sluice_testlib.timeout_scale())]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches each broker's log tail to the report of a failed setup or test call."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.when in ("setup", "call") and rep.failed:
        for i, b in enumerate(getattr(item, "_sluice_brokers", [])):
            rep.sections.append(("broker #%d log tail (%s)" % (i, b.log_path),
                                 tail(b.log_text(), 120)))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory):
    server = KafkaServer(tmp_path_factory.mktemp("kafka"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sluice_bin():
    path = sluice_testlib.sluice_bin()
    if not path.exists():
        pytest.fail("sluice binary %s does not exist (SLUICE_BIN=%s): build it first"
                    % (path, os.environ.get("SLUICE_BIN")), pytrace=False)
    return path


@pytest.fixture
def broker_factory(request, tmp_path):
    """Returns make(config=None, *, env=None, start=True, check_exit=True, args=None,
    ready_timeout=30.0) -> Broker, each in its own directory under tmp_path."""
    brokers = []
    request.node._sluice_brokers = brokers

    def make(config=None, *, env=None, start=True, check_exit=True, args=None,
             ready_timeout=30.0, binary=None):
        b = Broker(tmp_path / ("broker%d" % len(brokers)), config=config, env=env,
                   binary=binary, args=args, check_exit=check_exit, ready_timeout=ready_timeout)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    problems = []
    for i, b in enumerate(brokers):
        problems += ["broker #%d: %s" % (i, p) for p in b.close()]
    test_failed = any(getattr(request.node, "rep_" + w, None) is not None
                      and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    if problems and not test_failed:
        pytest.fail("broker teardown found problems:\n  " + "\n  ".join(problems)
                    + "\nlog tail:\n" + "\n".join(tail(b.log_text(), 60) for b in brokers),
                    pytrace=False)
