"""First start with no config: the server makes an account and aws CLI files for it."""

import configparser
import os
import re
import signal
import stat
import time
from pathlib import Path

import boto3
import pytest

from harness import aws_cli, iot_client, role_arn, s3file, unique

SETTINGS = ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE")


def _printed_settings(srv, timeout=5.0):
    """Values of the three settings printed on stdout (allows `export X=...` and quotes)."""
    deadline = time.monotonic() + timeout
    found = {}
    while time.monotonic() < deadline:
        text = srv.stdout_text()
        found = {}
        for name in SETTINGS:
            m = re.search(rf"{name}=(\"[^\"]*\"|'[^']*'|\S+)", text)
            if m:
                found[name] = m.group(1).strip("\"'")
        if len(found) == 3:
            return found
        time.sleep(0.1)
    pytest.fail(f"server stdout lacks {sorted(set(SETTINGS) - set(found))}:\n{srv.stdout_text()}")


def _same_file(a, b):
    return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)


def test_first_start_creates_account_and_aws_files(fresh_server, tmp_path, monkeypatch):
    srv = fresh_server
    settings = _printed_settings(srv)
    assert settings["AWS_PROFILE"] == "otatrail"
    assert _same_file(settings["AWS_SHARED_CREDENTIALS_FILE"], srv.credentials_file), settings
    assert _same_file(settings["AWS_CONFIG_FILE"], srv.config_file), settings

    mode = stat.S_IMODE(os.stat(srv.credentials_file).st_mode)
    assert mode == 0o600, f"credentials file mode is {oct(mode)}, expected 0o600"

    key, secret = srv.profile_credentials()
    assert re.fullmatch(r"[A-Z0-9]{16,128}", key), key
    assert len(secret) >= 20

    cfg = configparser.RawConfigParser()
    cfg.read(srv.config_file)
    assert cfg.has_section("profile otatrail"), f"config file sections: {cfg.sections()}"
    prof = cfg["profile otatrail"]
    assert prof.get("region") == "us-east-1"
    assert prof.get("endpoint_url") == srv.endpoint

    # The aws CLI with only the three settings (HOME is the test's tmp dir).
    env = srv.aws_env(home=tmp_path)
    assert not [k for k in env if k.startswith("AWS_") and k not in SETTINGS]
    ident = aws_cli(srv, "sts", "get-caller-identity", env=env)
    acct = ident["Account"]
    assert re.fullmatch(r"\d{12}", acct), ident
    assert ident["Arn"] == f"arn:aws:iam::{acct}:root"
    assert ident["UserId"] == acct
    assert aws_cli(srv, "iot", "list-streams", env=env) == {"streams": []}

    # boto3 with the same three settings and nothing else.
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    for k in SETTINGS:
        monkeypatch.setenv(k, env[k])
    monkeypatch.setenv("HOME", str(tmp_path))
    session = boto3.session.Session()
    assert session.client("sts").get_caller_identity()["Account"] == acct
    assert session.client("iot").list_streams()["streams"] == []

    logs = srv.all_logs()
    assert secret not in logs, "the generated secret access key appears in the server's logs"


def test_restart_keeps_the_account(fresh_server, tmp_path):
    srv = fresh_server
    env = srv.aws_env(home=tmp_path)
    acct = aws_cli(srv, "sts", "get-caller-identity", env=env)["Account"]
    key, secret = srv.profile_credentials()

    iot = iot_client(srv, key, secret)
    sid = unique("first")
    # The firmware goes in with `aws s3` and nothing but the three settings: the generated
    # config's `services` section routes S3 to its own port.
    image = tmp_path / "image.bin"
    image.write_bytes(b"\x7fELF first-start image")
    b, k = unique("first-fw"), "images/image.bin"
    aws_cli(srv, "s3", "mb", f"s3://{b}", env=env)
    aws_cli(srv, "s3", "cp", str(image), f"s3://{b}/{k}", "--only-show-errors", env=env)
    iot.create_stream(streamId=sid, files=[s3file(0, b, k)], roleArn=role_arn(acct))

    for sig in (signal.SIGTERM, signal.SIGKILL):
        srv.restart(sig)
        assert srv.profile_credentials() == (key, secret), "restart replaced the account's root key"
        cp = configparser.RawConfigParser()
        cp.read(srv.credentials_file)
        assert cp.sections() == ["otatrail"], f"credentials file profiles after restart: {cp.sections()}"
        ident = aws_cli(srv, "sts", "get-caller-identity", env=env)
        assert ident["Account"] == acct, "a second account was created on restart"
        streams = aws_cli(srv, "iot", "list-streams", env=env)["streams"]
        assert [s["streamId"] for s in streams] == [sid]
        mode = stat.S_IMODE(os.stat(srv.credentials_file).st_mode)
        assert mode == 0o600

    assert secret not in srv.all_logs(), "the secret access key appears in the server's logs"


def test_configured_server_writes_no_aws_files(server_factory):
    srv = server_factory("configured", name="noawsfiles")
    try:
        assert not (srv.data_dir / "aws" / "credentials").exists()
        assert not (srv.data_dir / "aws" / "config").exists()
        assert "AWS_SHARED_CREDENTIALS_FILE=" not in srv.stdout_text()
        for secret in srv.secrets():
            assert secret not in srv.all_logs()
    finally:
        srv.stop()
