"""STS GetCallerIdentity (query protocol) and SigV4 authentication failures."""

import datetime as dt
import re
from unittest import mock

import botocore.auth
import pytest
from botocore.exceptions import ClientError

from harness import assert_client_error, aws_cli, client_for, iot_client, sts_client

UNKNOWN_KEY = "AKIAUNKNOWN000000000"
SIGNATURE_MISMATCH_HINT = "The Canonical String for this request should have been"


# -- GetCallerIdentity ------------------------------------------------------------------


def test_get_caller_identity_root_boto3(server):
    r = sts_client(server).get_caller_identity()
    acct = server.account_id
    assert r["Account"] == acct
    assert r["Arn"] == f"arn:aws:iam::{acct}:root"
    assert r["UserId"] == acct
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_get_caller_identity_user_boto3(server):
    r = client_for("sts", server, server.user("alice")).get_caller_identity()
    acct = server.account_id
    assert r["Account"] == acct
    assert r["Arn"] == f"arn:aws:iam::{acct}:user/alice"
    assert r["UserId"].startswith("AIDA"), r["UserId"]
    assert re.fullmatch(r"AIDA[A-Z0-9]{12,}", r["UserId"]), r["UserId"]
    # Stable across calls.
    assert client_for("sts", server, server.user("alice")).get_caller_identity()["UserId"] == r["UserId"]


def test_get_caller_identity_second_account(server):
    other = server.accounts[1]
    r = client_for("sts", server, server.root(other)).get_caller_identity()
    assert (r["Account"], r["Arn"], r["UserId"]) == (other.id, f"arn:aws:iam::{other.id}:root", other.id)


def test_get_caller_identity_root_cli(server):
    out = aws_cli(server, "sts", "get-caller-identity")
    acct = server.account_id
    assert out == {"UserId": acct, "Account": acct, "Arn": f"arn:aws:iam::{acct}:root"}


def test_get_caller_identity_user_cli(server):
    out = aws_cli(server, "sts", "get-caller-identity", principal=server.user("alice"))
    assert out["Account"] == server.account_id
    assert out["Arn"] == f"arn:aws:iam::{server.account_id}:user/alice"
    assert out["UserId"].startswith("AIDA")


# -- unknown key / wrong secret ---------------------------------------------------------


def test_unknown_key_iot(server):
    with pytest.raises(ClientError) as e:
        iot_client(server, UNKNOWN_KEY, "x" * 40).list_streams()
    assert_client_error(e.value, "UnrecognizedClientException", 403)


def test_unknown_key_sts(server):
    with pytest.raises(ClientError) as e:
        sts_client(server, UNKNOWN_KEY, "x" * 40).get_caller_identity()
    assert_client_error(e.value, "InvalidClientTokenId", 403)


@pytest.mark.parametrize("who", ["root", "alice"])
def test_wrong_secret_iot(server, who):
    p = server.root() if who == "root" else server.user("alice")
    with pytest.raises(ClientError) as e:
        iot_client(server, p.access_key_id, p.secret_access_key + "x").list_streams()
    assert_client_error(e.value, "InvalidSignatureException", 403, SIGNATURE_MISMATCH_HINT)


@pytest.mark.parametrize("who", ["root", "alice"])
def test_wrong_secret_sts(server, who):
    p = server.root() if who == "root" else server.user("alice")
    with pytest.raises(ClientError) as e:
        sts_client(server, p.access_key_id, "wrong" + p.secret_access_key).get_caller_identity()
    assert_client_error(e.value, "SignatureDoesNotMatch", 403)


def test_key_of_one_account_with_secret_of_another(server):
    a, b = server.accounts[0], server.accounts[1]
    with pytest.raises(ClientError) as e:
        iot_client(server, a.root_key, b.root_secret).list_streams()
    assert_client_error(e.value, "InvalidSignatureException", 403)


def test_cli_wrong_secret_fails(server):
    from harness import AwsCliError, Principal

    p = server.root()
    with pytest.raises(AwsCliError) as e:
        aws_cli(server, "sts", "get-caller-identity",
                principal=Principal(p.access_key_id, "bad" + p.secret_access_key, p.account_id))
    assert "SignatureDoesNotMatch" in e.value.stderr


# -- clock skew -------------------------------------------------------------------------


def _skewed(delta):
    real = botocore.auth.get_current_datetime

    def fake(*a, **kw):
        return real(*a, **kw) + delta

    return mock.patch("botocore.auth.get_current_datetime", side_effect=fake)


@pytest.mark.parametrize(
    "minutes,hint",
    [(-20, "Signature expired"), (20, "Signature not yet current")],
    ids=["20-min-past", "20-min-future"],
)
def test_clock_skew_20_minutes_rejected_iot(server, minutes, hint):
    iot = iot_client(server)
    with _skewed(dt.timedelta(minutes=minutes)):
        with pytest.raises(ClientError) as e:
            iot.list_streams()
    assert_client_error(e.value, "InvalidSignatureException", 403, hint)


@pytest.mark.parametrize("minutes", [-20, 20], ids=["20-min-past", "20-min-future"])
def test_clock_skew_20_minutes_rejected_sts(server, minutes):
    sts = sts_client(server)
    with _skewed(dt.timedelta(minutes=minutes)):
        with pytest.raises(ClientError) as e:
            sts.get_caller_identity()
    assert_client_error(e.value, "SignatureDoesNotMatch", 403)


@pytest.mark.parametrize("minutes", [-10, 10], ids=["10-min-past", "10-min-future"])
def test_clock_skew_10_minutes_accepted(server, minutes):
    iot, sts = iot_client(server), sts_client(server)
    with _skewed(dt.timedelta(minutes=minutes)):
        assert "streams" in iot.list_streams()
        assert sts.get_caller_identity()["Account"] == server.account_id


# -- secrets stay out of the logs (keep this last in the module) ------------------------


def test_secrets_never_logged(server):
    logs = server.all_logs()
    for secret in server.secrets():
        assert secret not in logs, "a secret access key appears in the server's stdout/stderr"
