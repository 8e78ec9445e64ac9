"""Bucket policies, lifecycle rules and the trail's records of S3 bucket-level calls.

The server runs with a one-second lifecycle "day" and sweep, so expiry and transitions can be
watched with boto3 and the aws CLI within a few seconds.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from harness import (
    AwsCliError,
    EXTERNAL_S3,
    ACCOUNT_A,
    ACCOUNT_B,
    CONFIGURED_ACCOUNTS,
    aws_cli,
    make_client,
    put_object,
    render_config,
    s3_client,
)

CONFIG = "lifecycle_day_seconds = 1\nlifecycle_interval_seconds = 1\n" + render_config(CONFIGURED_ACCOUNTS)


@pytest.fixture(scope="module")
def srv(server_factory):
    s = server_factory("configured", name="s3config", start=False)
    s.config_path.write_text(CONFIG)
    s.start()
    yield s
    s.stop()


def client(srv, account):
    p = srv.root(account)
    return s3_client(srv, p.access_key_id, p.secret_access_key)


def bucket_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def code(e: ClientError) -> tuple[str, int]:
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def test_bucket_policy_round_trip_and_errors(srv):
    s3 = client(srv, ACCOUNT_A)
    b = bucket_name("policy")
    s3.create_bucket(Bucket=b)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=b)
    assert code(e.value) == ("NoSuchBucketPolicy", 404)
    doc = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadFirmware",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_B.id}:root"},
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{b}/*",
                }
            ],
        }
    )
    s3.put_bucket_policy(Bucket=b, Policy=doc)
    assert json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]) == json.loads(doc)
    for bad in ("not json", json.dumps({"Statement": [{"Effect": "Maybe", "Action": "s3:*"}]})):
        with pytest.raises(ClientError) as e:
            s3.put_bucket_policy(Bucket=b, Policy=bad)
        assert code(e.value) == ("MalformedPolicy", 400)
    # Only the owner manages the policy.
    with pytest.raises(ClientError) as e:
        client(srv, ACCOUNT_B).put_bucket_policy(Bucket=b, Policy=doc)
    assert code(e.value) == ("AccessDenied", 403)
    s3.delete_bucket_policy(Bucket=b)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=b)
    assert code(e.value) == ("NoSuchBucketPolicy", 404)


def test_policy_grants_another_account_exactly_what_it_says(srv):
    owner, other = client(srv, ACCOUNT_A), client(srv, ACCOUNT_B)
    b = bucket_name("shared")
    owner.create_bucket(Bucket=b)
    owner.put_object(Bucket=b, Key="fw/image.bin", Body=b"shared firmware")
    with pytest.raises(ClientError) as e:
        other.get_object(Bucket=b, Key="fw/image.bin")
    assert code(e.value) == ("AccessDenied", 403)

    owner.put_bucket_policy(
        Bucket=b,
        Policy=json.dumps(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": ACCOUNT_B.id},
                        "Action": ["s3:GetObject"],
                        "Resource": f"arn:aws:s3:::{b}/fw/*",
                    }
                ]
            }
        ),
    )
    assert other.get_object(Bucket=b, Key="fw/image.bin")["Body"].read() == b"shared firmware"
    # Not granted: writing, listing, and reading outside the resource.
    with pytest.raises(ClientError) as e:
        other.put_object(Bucket=b, Key="fw/evil.bin", Body=b"x")
    assert code(e.value) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as e:
        other.list_objects_v2(Bucket=b)
    assert code(e.value) == ("AccessDenied", 403)
    owner.put_object(Bucket=b, Key="private/key.pem", Body=b"secret")
    with pytest.raises(ClientError) as e:
        other.get_object(Bucket=b, Key="private/key.pem")
    assert code(e.value) == ("AccessDenied", 403)


def test_lifecycle_expiry_and_transition(srv):
    s3 = client(srv, ACCOUNT_A)
    b = bucket_name("lifecycle")
    s3.create_bucket(Bucket=b)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert code(e.value) == ("NoSuchLifecycleConfiguration", 404)
    s3.put_bucket_lifecycle_configuration(
        Bucket=b,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 2}},
                {
                    "ID": "cold",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "cold/"},
                    "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}],
                },
                {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Days": 1}},
            ]
        },
    )
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]}
    assert rules["expire-logs"]["Expiration"]["Days"] == 2
    assert rules["cold"]["Transitions"][0]["StorageClass"] == "GLACIER"
    assert rules["off"]["Status"] == "Disabled"
    for key in ("logs/a.json.gz", "cold/old.bin", "keep/b.bin", "other/c.bin"):
        s3.put_object(Bucket=b, Key=key, Body=key.encode())

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])}
        cold = s3.head_object(Bucket=b, Key="cold/old.bin").get("StorageClass")
        if "logs/a.json.gz" not in keys and cold == "GLACIER":
            break
        time.sleep(0.5)
    assert keys == {"cold/old.bin", "keep/b.bin", "other/c.bin"}, keys
    assert cold == "GLACIER"
    # The transitioned object is still readable, and reported with its class in listings.
    assert s3.get_object(Bucket=b, Key="cold/old.bin")["Body"].read() == b"cold/old.bin"
    listed = {o["Key"]: o.get("StorageClass") for o in s3.list_objects_v2(Bucket=b)["Contents"]}
    assert listed["cold/old.bin"] == "GLACIER"
    s3.delete_bucket_lifecycle(Bucket=b)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=b)
    assert code(e.value) == ("NoSuchLifecycleConfiguration", 404)


def test_bucket_calls_are_in_the_trail_and_object_calls_are_not(srv):
    s3 = client(srv, ACCOUNT_A)
    b = bucket_name("audited")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="data.bin", Body=b"data event")
    s3.get_object(Bucket=b, Key="data.bin")["Body"].read()
    s3.put_bucket_policy(
        Bucket=b,
        Policy=json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}]}),
    )
    with pytest.raises(ClientError):
        s3.create_bucket(Bucket=b)  # BucketAlreadyOwnedByYou, recorded as a failure
    s3.delete_object(Bucket=b, Key="data.bin")
    s3.delete_bucket(Bucket=b)

    ct = make_client("cloudtrail", srv)
    events = ct.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "s3.amazonaws.com"}], MaxResults=50
    )["Events"]
    mine = [json.loads(e["CloudTrailEvent"]) for e in events if b in e["CloudTrailEvent"]]
    names = sorted(r["eventName"] for r in mine)
    assert names == ["CreateBucket", "CreateBucket", "DeleteBucket", "PutBucketPolicy"], names
    failed = [r for r in mine if r.get("errorCode")]
    assert [r["errorCode"] for r in failed] == ["BucketAlreadyOwnedByYou"]
    for r in mine:
        assert r["eventSource"] == "s3.amazonaws.com"
        assert r["userIdentity"]["type"] == "Root"
        assert r["userIdentity"]["accountId"] == ACCOUNT_A.id
        assert r["requestParameters"]["bucketName"] == b
        assert r["sourceIPAddress"] == "127.0.0.1"
        assert r["userAgent"].startswith("Boto3/")
    # Object reads and writes are data events: never in the trail.
    assert not any(e["EventName"] in ("PutObject", "GetObject", "DeleteObject") for e in events)


def test_cli_bucket_round_trip(srv, tmp_path):
    b = bucket_name("cli")
    aws_cli(srv, "s3", "mb", f"s3://{b}")
    f = tmp_path / "fw.bin"
    f.write_bytes(b"cli firmware")
    aws_cli(srv, "s3", "cp", str(f), f"s3://{b}/a/fw.bin", "--only-show-errors")
    listing = aws_cli(srv, "s3", "ls", "--recursive", f"s3://{b}")
    assert "a/fw.bin" in listing
    aws_cli(srv, "s3api", "put-bucket-policy", "--bucket", b, "--policy",
            json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT_B.id}, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}]}))
    got = aws_cli(srv, "s3api", "get-bucket-policy", "--bucket", b)
    assert json.loads(got["Policy"])["Statement"][0]["Principal"]["AWS"] == ACCOUNT_B.id
    aws_cli(srv, "s3", "rm", f"s3://{b}/a/fw.bin", "--only-show-errors")
    aws_cli(srv, "s3", "rb", f"s3://{b}")
    with pytest.raises(AwsCliError) as e:
        aws_cli(srv, "s3api", "head-bucket", "--bucket", b)
    assert "404" in e.value.stderr or "Not Found" in e.value.stderr, e.value.stderr


@pytest.mark.skipif(not EXTERNAL_S3, reason="only with OTATRAIL_TEST_EXTERNAL_S3=1 (an external S3 store)")
def test_external_store_holds_the_bytes_with_sse(srv):
    """In external mode the bytes go to the independent store, written with SSE AES256, and
    nothing of them stays in the data directory."""
    import boto3

    s3 = client(srv, ACCOUNT_A)
    b = bucket_name("external")
    s3.create_bucket(Bucket=b)
    marker = b"EXTERNAL-MARKER-" * 4096
    s3.put_object(Bucket=b, Key="blob.bin", Body=marker)
    flags = srv._external_flags
    endpoint, bucket = flags[flags.index("--s3-endpoint") + 1], flags[flags.index("--s3-bucket") + 1]
    ext = boto3.session.Session().client(
        "s3", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="moto", aws_secret_access_key="moto"
    )
    blobs = [o for o in ext.list_objects_v2(Bucket=bucket, Prefix="blobs/")["Contents"] if o["Size"] == len(marker)]
    assert len(blobs) == 1, blobs
    head = ext.head_object(Bucket=bucket, Key=blobs[0]["Key"])
    assert head["ServerSideEncryption"] == "AES256"
    assert ext.get_object(Bucket=bucket, Key=blobs[0]["Key"])["Body"].read() == marker
    for path in srv.data_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("otatrail.db"):
            assert b"EXTERNAL-MARKER-" not in path.read_bytes(), path
