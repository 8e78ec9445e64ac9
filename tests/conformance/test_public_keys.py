"""ListPublicKeys: the per-region digest signing keys, in the form `aws cloudtrail
validate-logs` loads them (base64 of a PKCS#1 DER RSA public key, MD5 fingerprint)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import boto3
import pytest
import rsa  # python-rsa, which `aws cloudtrail validate-logs` itself uses
from botocore.exceptions import ClientError

from harness import aws_cli, make_client


def test_keys_load_as_the_cli_loads_them(server):
    ct = make_client("cloudtrail", server)
    keys = ct.list_public_keys()["PublicKeyList"]
    assert len(keys) == 1
    k = keys[0]
    der = k["Value"]  # botocore decodes the blob
    assert hashlib.md5(der).hexdigest() == k["Fingerprint"]
    pub = rsa.PublicKey.load_pkcs1(der, "DER")
    assert pub.n.bit_length() == 2048 and pub.e == 65537
    now = dt.datetime.now(dt.timezone.utc)
    assert k["ValidityStartTime"] <= now < k["ValidityEndTime"]
    # The same key on every call, and through the CLI's time-range form.
    again = ct.list_public_keys(StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(hours=2))["PublicKeyList"]
    assert [x["Fingerprint"] for x in again] == [k["Fingerprint"]]
    cli = aws_cli(server, "cloudtrail", "list-public-keys")
    assert [x["Fingerprint"] for x in cli["PublicKeyList"]] == [k["Fingerprint"]]
    assert base64.b64decode(cli["PublicKeyList"][0]["Value"]) == der


def test_keys_are_per_region_and_ranges_filter(server):
    p = server.root()
    east = make_client("cloudtrail", server)
    west = boto3.session.Session().client(
        "cloudtrail", region_name="eu-west-1", endpoint_url=server.endpoint,
        aws_access_key_id=p.access_key_id, aws_secret_access_key=p.secret_access_key,
    )
    fe = {k["Fingerprint"] for k in east.list_public_keys()["PublicKeyList"]}
    fw = {k["Fingerprint"] for k in west.list_public_keys()["PublicKeyList"]}
    assert fe and fw and not (fe & fw)
    past = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)
    assert east.list_public_keys(StartTime=past, EndTime=past + dt.timedelta(days=1))["PublicKeyList"] == []


def test_errors(server):
    ct = make_client("cloudtrail", server)
    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(ClientError) as e:
        ct.list_public_keys(StartTime=now, EndTime=now - dt.timedelta(days=1))
    assert e.value.response["Error"]["Code"] == "InvalidTimeRangeException"
    with pytest.raises(ClientError) as e:
        ct.list_public_keys(NextToken="garbage")
    assert e.value.response["Error"]["Code"] == "InvalidTokenException"
