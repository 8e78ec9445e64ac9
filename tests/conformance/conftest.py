"""Fixtures of the otatrail conformance suite.

- `server`: an otatrail started with a config file declaring two accounts (module scope,
  fresh data dir per test module).
- `fresh_server`: an otatrail started with an empty data dir and no config (function scope).
- `server_factory`: builds extra servers (for restart tests); all are stopped at the end.

The helpers (`iot_client`, `sts_client`, `put_object`, `aws_cli`, ...) live in harness.py.
"""

from __future__ import annotations

import os

import pytest

import harness
from harness import ConfiguredServer, FreshServer, otatrail_binary


@pytest.fixture(scope="session", autouse=True)
def _isolated_aws_environment(tmp_path_factory):
    """No AWS_* variable or ~/.aws file of the person running the tests may leak into boto3."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith("AWS_"):
            del os.environ[k]
    os.environ["AWS_CONFIG_FILE"] = str(home / "no-such-aws-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(home / "no-such-aws-credentials")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def otatrail_bin():
    path = otatrail_binary()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.skip(
            f"otatrail binary not found at {path}: build it with `cargo build` "
            "(or point OTATRAIL_BIN at one) to run the conformance suite"
        )
    return path


@pytest.fixture(scope="session")
def server_factory(otatrail_bin, tmp_path_factory):
    created: list[harness.OtatrailServer] = []

    def make(kind: str = "configured", name: str = "otatrail", start: bool = True, **kw):
        workdir = tmp_path_factory.mktemp(name)
        cls = {"configured": ConfiguredServer, "fresh": FreshServer}[kind]
        srv = cls(otatrail_bin, workdir, name=name, **kw)
        created.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    for srv in created:
        srv.stop()


@pytest.fixture(scope="module")
def server(server_factory, request):
    name = request.module.__name__.rsplit(".", 1)[-1]
    srv = server_factory("configured", name=name)
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(server_factory):
    srv = server_factory("fresh", name="fresh")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def iot(server):
    return harness.iot_client(server)


@pytest.fixture(scope="module")
def sts(server):
    return harness.sts_client(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and harness.RUNNING_SERVERS:
        for srv in list(harness.RUNNING_SERVERS):
            try:
                rep.sections.append((f"otatrail server {srv.name} (port {srv.port}) logs", srv.describe_logs()))
            except Exception as e:  # never hide the real failure
                rep.sections.append((f"otatrail server {srv.name} logs", f"(could not read logs: {e!r})"))
