"""The S3 endpoint end to end (boto3 and the aws CLI v1, path-style, SigV4).

Buckets (name rules, conflicts, location, deletion), objects (metadata, SSE header, ETag,
ranges, conditional reads, copy, delete), listings (v1 and v2, with every pagination knob),
multipart uploads (and their errors), presigned URLs, authentication (unknown keys, bad
secrets, anonymous requests, temporary credentials, other accounts), encryption at rest and
IoT streams whose files point at objects uploaded through S3.

Everything runs against the module's shared `server` (two accounts: A with root and alice,
B with a root only).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import (
    EXTERNAL_S3,
    ACCOUNT_A,
    ACCOUNT_B,
    REGION,
    aws_cli,
    client_config,
    iot_client,
    make_client,
    put_object,
    role_arn,
    s3_client,
    s3file,
    unique,
)

MiB = 1024 * 1024


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def bucket_name(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def client_of(server, account=ACCOUNT_A):
    p = server.root(account)
    return s3_client(server, p.access_key_id, p.secret_access_key)


def creds_client(server, key: str, secret: str, token: str | None = None):
    """An S3 client with explicit (possibly temporary) credentials."""
    return boto3.session.Session().client(
        "s3",
        region_name=REGION,
        endpoint_url=server.s3_endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=client_config(),
    )


def error_of(fn, *a, **kw) -> ClientError:
    with pytest.raises(ClientError) as e:
        fn(*a, **kw)
    return e.value


def code(e: ClientError) -> tuple[str, int]:
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def new_bucket(s3, prefix: str = "b", **kw) -> str:
    b = bucket_name(prefix)
    s3.create_bucket(Bucket=b, **kw)
    return b


def http_get(url: str, headers: dict | None = None, timeout: float = 30):
    """A plain (unsigned unless the URL is presigned) GET; returns (status, headers, body),
    the headers as a case-insensitive email.message.Message."""
    req = urllib.request.Request(url, headers=headers or {}, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def xml_error_code(body: bytes) -> str | None:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    el = root.find("Code")
    return el.text if el is not None else None


def list_v1_all(s3, bucket: str, **kw) -> tuple[list[str], list[str], list[dict]]:
    """Pages through ListObjects (v1) by hand: (keys, common prefixes, raw pages)."""
    keys, prefixes, pages = [], [], []
    marker = None
    for _ in range(200):
        args = dict(kw)
        if marker is not None:
            args["Marker"] = marker
        r = s3.list_objects(Bucket=bucket, **args)
        pages.append(r)
        page_keys = [o["Key"] for o in r.get("Contents", [])]
        keys += page_keys
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            return keys, prefixes, pages
        marker = r.get("NextMarker") or page_keys[-1]
    raise AssertionError("ListObjects never stopped being truncated")


# --------------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "UpperCase-bucket", "under_score-bucket"],
    ids=["too-short", "too-long", "uppercase", "underscore"],
)
def test_create_bucket_invalid_name(server, name):
    s3 = client_of(server)
    assert code(error_of(s3.create_bucket, Bucket=name)) == ("InvalidBucketName", 400)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_name_length_limits_accepted(server):
    s3 = client_of(server)
    short = "z" + uuid.uuid4().hex[:2]  # 3 characters
    long_ = ("l-" + uuid.uuid4().hex + "." + "x" * 63)[:63]  # 63 characters
    assert (len(short), len(long_)) == (3, 63)
    for b in (short, long_):
        s3.create_bucket(Bucket=b)
        s3.head_bucket(Bucket=b)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert short in names and long_ in names


def test_create_bucket_conflicts(server):
    s3a, s3b = client_of(server, ACCOUNT_A), client_of(server, ACCOUNT_B)
    b = new_bucket(s3a, "conflict")
    assert code(error_of(s3a.create_bucket, Bucket=b)) == ("BucketAlreadyOwnedByYou", 409)
    assert code(error_of(s3b.create_bucket, Bucket=b)) == ("BucketAlreadyExists", 409)
    # The bucket still belongs to A.
    assert b in [x["Name"] for x in s3a.list_buckets()["Buckets"]]
    assert b not in [x["Name"] for x in s3b.list_buckets()["Buckets"]]


def test_list_buckets_only_callers_account(server):
    s3a, s3b = client_of(server, ACCOUNT_A), client_of(server, ACCOUNT_B)
    ba, bb = new_bucket(s3a, "mine-a"), new_bucket(s3b, "mine-b")
    names_a = [x["Name"] for x in s3a.list_buckets()["Buckets"]]
    names_b = [x["Name"] for x in s3b.list_buckets()["Buckets"]]
    assert ba in names_a and bb not in names_a
    assert bb in names_b and ba not in names_b
    # Same answer from the CLI.
    out = aws_cli(server, "s3api", "list-buckets", principal=server.root(ACCOUNT_B))
    cli_names = [x["Name"] for x in out["Buckets"]]
    assert bb in cli_names and ba not in cli_names


def test_bucket_location(server):
    s3 = client_of(server)
    plain = new_bucket(s3, "loc-default")
    eu = new_bucket(s3, "loc-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert s3.get_bucket_location(Bucket=plain).get("LocationConstraint") is None
    assert s3.get_bucket_location(Bucket=eu)["LocationConstraint"] == "eu-west-1"


def test_head_bucket(server):
    s3 = client_of(server)
    b = new_bucket(s3, "head")
    assert s3.head_bucket(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert code(error_of(s3.head_bucket, Bucket=bucket_name("missing"))) == ("404", 404)


def test_delete_bucket(server):
    s3 = client_of(server)
    b = new_bucket(s3, "del")
    s3.put_object(Bucket=b, Key="k1", Body=b"one")
    assert code(error_of(s3.delete_bucket, Bucket=b)) == ("BucketNotEmpty", 409)
    s3.head_bucket(Bucket=b)
    s3.delete_object(Bucket=b, Key="k1")
    assert s3.delete_bucket(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code(error_of(s3.head_bucket, Bucket=b)) == ("404", 404)
    assert b not in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    assert code(error_of(s3.delete_bucket, Bucket=b)) == ("NoSuchBucket", 404)
    assert code(error_of(s3.delete_bucket, Bucket=bucket_name("never"))) == ("NoSuchBucket", 404)


# --------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(server):
    return new_bucket(client_of(server), "objects")


def test_put_get_head_metadata_sse_and_etag(server, bucket):
    s3 = client_of(server)
    data = os.urandom(4096) + b"firmware"
    put = s3.put_object(
        Bucket=bucket, Key="fw/meta.bin", Body=data, ContentType="application/x-firmware",
        Metadata={"Firmware-Version": "1.2.3", "board": "rev-B"},
    )
    assert put["ETag"] == md5_etag(data)
    assert put["ServerSideEncryption"] == "AES256"

    head = s3.head_object(Bucket=bucket, Key="fw/meta.bin")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ETag"] == md5_etag(data)
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "application/x-firmware"
    assert head["Metadata"] == {"firmware-version": "1.2.3", "board": "rev-B"}

    get = s3.get_object(Bucket=bucket, Key="fw/meta.bin")
    assert get["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert get["ServerSideEncryption"] == "AES256"
    assert get["ETag"] == md5_etag(data)
    assert get["ContentType"] == "application/x-firmware"
    assert get["Metadata"] == {"firmware-version": "1.2.3", "board": "rev-B"}
    assert get["ContentLength"] == len(data)
    assert get["Body"].read() == data


def test_put_empty_object(server, bucket):
    s3 = client_of(server)
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == md5_etag(b"")
    get = s3.get_object(Bucket=bucket, Key="empty")
    assert get["ContentLength"] == 0 and get["Body"].read() == b""


def test_get_range(server, bucket):
    s3 = client_of(server)
    data = bytes(range(256)) * 4  # 1024 bytes
    s3.put_object(Bucket=bucket, Key="range.bin", Body=data)
    for rng, (a, b) in {"bytes=10-19": (10, 19), "bytes=1000-": (1000, 1023), "bytes=-24": (1000, 1023),
                        "bytes=0-0": (0, 0), "bytes=1020-5000": (1020, 1023)}.items():
        r = s3.get_object(Bucket=bucket, Key="range.bin", Range=rng)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 206, rng
        assert r["ContentRange"] == f"bytes {a}-{b}/1024", rng
        assert r["ContentLength"] == b - a + 1, rng
        assert r["Body"].read() == data[a:b + 1], rng
    e = error_of(s3.get_object, Bucket=bucket, Key="range.bin", Range="bytes=5000-6000")
    assert code(e) == ("InvalidRange", 416)


def test_get_conditionals(server, bucket):
    s3 = client_of(server)
    data = b"conditional read"
    etag = s3.put_object(Bucket=bucket, Key="cond", Body=data)["ETag"]
    assert etag == md5_etag(data)

    assert s3.get_object(Bucket=bucket, Key="cond", IfMatch=etag)["Body"].read() == data
    e = error_of(s3.get_object, Bucket=bucket, Key="cond", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert code(e) == ("PreconditionFailed", 412)

    e = error_of(s3.get_object, Bucket=bucket, Key="cond", IfNoneMatch=etag)
    assert code(e) == ("304", 304)
    other = '"ffffffffffffffffffffffffffffffff"'
    assert s3.get_object(Bucket=bucket, Key="cond", IfNoneMatch=other)["Body"].read() == data

    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    e = error_of(s3.get_object, Bucket=bucket, Key="cond", IfModifiedSince=future)
    assert code(e) == ("304", 304)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    assert s3.get_object(Bucket=bucket, Key="cond", IfModifiedSince=past)["Body"].read() == data


def test_missing_key(server, bucket):
    s3 = client_of(server)
    assert code(error_of(s3.get_object, Bucket=bucket, Key="no/such/key")) == ("NoSuchKey", 404)
    assert code(error_of(s3.head_object, Bucket=bucket, Key="no/such/key")) == ("404", 404)


def test_delete_object(server, bucket):
    s3 = client_of(server)
    s3.put_object(Bucket=bucket, Key="to-delete", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="to-delete")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code(error_of(s3.get_object, Bucket=bucket, Key="to-delete")) == ("NoSuchKey", 404)
    # Deleting a key that does not exist succeeds.
    assert s3.delete_object(Bucket=bucket, Key="to-delete")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="never-existed")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_objects(server):
    s3 = client_of(server)
    b = new_bucket(s3, "multidel")
    for k in ("a", "b", "c", "d", "e"):
        s3.put_object(Bucket=b, Key=k, Body=k.encode())

    r = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in r["Deleted"]) == ["a", "b", "missing"]
    assert r.get("Errors", []) == []
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])) == ["c", "d", "e"]

    r = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "c"}, {"Key": "d"}], "Quiet": True})
    assert r.get("Deleted", []) == []
    assert r.get("Errors", []) == []
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])] == ["e"]


def test_copy_object_directives(server, bucket):
    s3 = client_of(server)
    data = b"copy me " * 100
    s3.put_object(Bucket=bucket, Key="src", Body=data, ContentType="text/plain",
                  Metadata={"origin": "source"})
    dest_bucket = new_bucket(s3, "copydest")

    r = s3.copy_object(Bucket=dest_bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "src"})
    assert r["CopyObjectResult"]["ETag"] == md5_etag(data)
    head = s3.head_object(Bucket=dest_bucket, Key="copied")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"origin": "source"}
    assert head["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=dest_bucket, Key="copied")["Body"].read() == data

    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="COPY", Metadata={"ignored": "yes"})
    assert s3.head_object(Bucket=bucket, Key="replaced")["Metadata"] == {"origin": "source"}

    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", ContentType="application/octet-stream",
                   Metadata={"Stage": "Replaced"})
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert head["Metadata"] == {"stage": "Replaced"}
    assert head["ContentType"] == "application/octet-stream"
    assert head["ETag"] == md5_etag(data)
    assert s3.get_object(Bucket=bucket, Key="replaced")["Body"].read() == data
    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"origin": "source"}


# --------------------------------------------------------------------------------------
# Listings
# --------------------------------------------------------------------------------------

# Sorted by UTF-8 bytes, "\U0001f600" (F0 9F 98 80) comes after "\uff01" (EF BC 81); by
# UTF-16 code units it would come before. "Z" (5A) sorts before "a" (61).
LIST_KEYS = [
    "a", "b", "Z", "dir1/x", "dir1/y", "dir2/z", "dir2/sub/w", "with space", "plus+sign",
    "caf\u00e9", "\uff01wide", "\U0001f600smile", "~tilde",
]


@pytest.fixture(scope="module")
def listing_bucket(server):
    s3 = client_of(server)
    b = new_bucket(s3, "listing")
    for k in LIST_KEYS:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())
    return b


def utf8_sorted(keys):
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def test_list_v1_all_keys_in_utf8_byte_order(server, listing_bucket):
    s3 = client_of(server)
    r = s3.list_objects(Bucket=listing_bucket)
    assert r["IsTruncated"] is False
    assert [o["Key"] for o in r["Contents"]] == utf8_sorted(LIST_KEYS)
    for o in r["Contents"]:
        assert o["Size"] == len(o["Key"].encode())
        assert o["ETag"] == md5_etag(o["Key"].encode())


def test_list_v1_prefix_marker(server, listing_bucket):
    s3 = client_of(server)
    r = s3.list_objects(Bucket=listing_bucket, Prefix="dir1/")
    assert [o["Key"] for o in r["Contents"]] == ["dir1/x", "dir1/y"]
    r = s3.list_objects(Bucket=listing_bucket, Marker="dir1/x")
    want = [k for k in utf8_sorted(LIST_KEYS) if k.encode() > b"dir1/x"]
    assert [o["Key"] for o in r["Contents"]] == want
    r = s3.list_objects(Bucket=listing_bucket, Prefix="dir", Marker="dir1/y")
    assert [o["Key"] for o in r["Contents"]] == ["dir2/sub/w", "dir2/z"]
    r = s3.list_objects(Bucket=listing_bucket, Prefix="nothing-here/")
    assert r.get("Contents", []) == [] and r["IsTruncated"] is False


def test_list_v1_delimiter(server, listing_bucket):
    s3 = client_of(server)
    r = s3.list_objects(Bucket=listing_bucket, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir1/", "dir2/"]
    assert [o["Key"] for o in r["Contents"]] == utf8_sorted(k for k in LIST_KEYS if "/" not in k)
    r = s3.list_objects(Bucket=listing_bucket, Delimiter="/", Prefix="dir2/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir2/sub/"]
    assert [o["Key"] for o in r["Contents"]] == ["dir2/z"]


def test_list_v1_max_keys_without_delimiter(server, listing_bucket):
    s3 = client_of(server)
    r = s3.list_objects(Bucket=listing_bucket, MaxKeys=3)
    assert r["IsTruncated"] is True
    assert len(r["Contents"]) == 3
    assert "NextMarker" not in r  # S3 returns NextMarker only with a delimiter
    keys, _, pages = list_v1_all(s3, listing_bucket, MaxKeys=3)
    assert keys == utf8_sorted(LIST_KEYS)
    assert len(pages) == 5  # 13 keys, 3 per page
    assert all(len(p.get("Contents", [])) <= 3 for p in pages)


def test_list_v1_max_keys_with_delimiter(server, listing_bucket):
    s3 = client_of(server)
    r = s3.list_objects(Bucket=listing_bucket, MaxKeys=2, Delimiter="/")
    assert r["IsTruncated"] is True
    entries = [o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    assert len(entries) == 2
    assert r["NextMarker"] == max(entries, key=lambda k: k.encode())
    r = s3.list_objects(Bucket=listing_bucket, Delimiter="/", Prefix="dir", MaxKeys=1)
    assert ([p["Prefix"] for p in r["CommonPrefixes"]], r["IsTruncated"], r["NextMarker"]) == (["dir1/"], True, "dir1/")


# A common prefix that ends a page must not come back on the next one: S3 lists the entries
# (keys and common prefixes) strictly after the marker / continuation token.
PREFIX_REPEATED = (
    "server deviation: a common prefix that ends a truncated page (NextMarker / "
    "NextContinuationToken = 'dir2/') is listed again on the next page, because the keys under "
    "it sort after the marker and are rolled up into the same prefix"
)



def test_list_v1_delimiter_pagination_does_not_repeat_prefixes(server, listing_bucket):
    s3 = client_of(server)
    keys, prefixes, pages = list_v1_all(s3, listing_bucket, MaxKeys=2, Delimiter="/")
    assert prefixes == ["dir1/", "dir2/"]
    assert keys == utf8_sorted(k for k in LIST_KEYS if "/" not in k)
    for p in pages[:-1]:
        assert p["IsTruncated"] is True and p.get("NextMarker")
    assert "NextMarker" not in pages[-1] or pages[-1]["IsTruncated"] is False


def test_list_v1_encoding_type_url(server, listing_bucket):
    s3 = client_of(server)
    # botocore asks for EncodingType=url by itself and decodes the keys.
    keys = [o["Key"] for o in s3.list_objects(Bucket=listing_bucket)["Contents"]]
    assert "with space" in keys and "plus+sign" in keys and "caf\u00e9" in keys and "\U0001f600smile" in keys
    # Asked for explicitly, botocore leaves the encoded keys alone.
    r = s3.list_objects(Bucket=listing_bucket, EncodingType="url")
    assert r["EncodingType"] == "url"
    raw = [o["Key"] for o in r["Contents"]]
    assert [urllib.parse.unquote_plus(k) for k in raw] == utf8_sorted(LIST_KEYS)
    for k in raw:
        assert " " not in k and all(ord(c) < 128 for c in k), raw
    assert "plus+sign" not in raw  # a literal '+' must be encoded
    r = s3.list_objects_v2(Bucket=listing_bucket, EncodingType="url")
    assert [urllib.parse.unquote_plus(o["Key"]) for o in r["Contents"]] == utf8_sorted(LIST_KEYS)
    assert all(" " not in o["Key"] for o in r["Contents"])


def test_list_v2_pagination(server, listing_bucket):
    s3 = client_of(server)
    r = s3.list_objects_v2(Bucket=listing_bucket)
    assert r["KeyCount"] == len(LIST_KEYS) and r["IsTruncated"] is False
    assert "NextContinuationToken" not in r

    keys, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=4, **kw)
        pages += 1
        assert r["MaxKeys"] == 4
        assert r["KeyCount"] == len(r.get("Contents", []))
        if token:
            assert r["ContinuationToken"] == token
        keys += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            assert "NextContinuationToken" not in r
            break
        assert r["KeyCount"] == 4
        token = r["NextContinuationToken"]
        assert pages < 20
    assert keys == utf8_sorted(LIST_KEYS)
    assert pages == 4  # 13 keys, 4 per page

    r = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="dir2/z")
    want = [k for k in utf8_sorted(LIST_KEYS) if k.encode() > b"dir2/z"]
    assert [o["Key"] for o in r["Contents"]] == want
    assert r["KeyCount"] == len(want)
    assert r["StartAfter"] == "dir2/z"

    r = s3.list_objects_v2(Bucket=listing_bucket, Delimiter="/", MaxKeys=1000)
    assert r["KeyCount"] == len(r.get("Contents", [])) + len(r.get("CommonPrefixes", []))
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["dir1/", "dir2/"]



def test_list_v2_delimiter_pagination_does_not_repeat_prefixes(server, listing_bucket):
    s3 = client_of(server)
    keys, prefixes, token = [], [], None
    for _ in range(20):
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=2, Delimiter="/", **kw)
        assert r["KeyCount"] == len(r.get("Contents", [])) + len(r.get("CommonPrefixes", []))
        keys += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert prefixes == ["dir1/", "dir2/"]
    assert keys == utf8_sorted(k for k in LIST_KEYS if "/" not in k)


def test_cli_list_objects_pagination_and_ls(server):
    s3 = client_of(server)
    b = new_bucket(s3, "cli-list")
    keys = [f"obj/{i:03d}.bin" for i in range(25)]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())

    got, token, calls = [], None, 0
    while True:
        args = ["s3api", "list-objects", "--bucket", b, "--max-items", "10"]
        if token:
            args += ["--starting-token", token]
        out = aws_cli(server, *args)
        calls += 1
        got += [o["Key"] for o in out["Contents"]]
        token = out.get("NextToken")
        if not token:
            break
        assert calls < 10
    assert calls == 3
    assert got == keys

    # A small page size makes the CLI page through the server itself.
    out = aws_cli(server, "s3api", "list-objects", "--bucket", b, "--page-size", "7")
    assert [o["Key"] for o in out["Contents"]] == keys

    text = aws_cli(server, "s3", "ls", f"s3://{b}", "--recursive")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    listed = [ln.split()[-1] for ln in lines]
    assert listed == keys
    sizes = [int(ln.split()[2]) for ln in lines]
    assert sizes == [len(k) for k in keys]


# --------------------------------------------------------------------------------------
# Multipart uploads
# --------------------------------------------------------------------------------------


def upload_parts(s3, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == md5_etag(p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return uid, done


def test_multipart_complete_and_list_parts(server, bucket):
    s3 = client_of(server)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail" * 300]
    uid, done = upload_parts(s3, bucket, "mp/complete.bin", parts)

    lp = s3.list_parts(Bucket=bucket, Key="mp/complete.bin", UploadId=uid)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in lp["Parts"]] == [
        (i, md5_etag(p), len(p)) for i, p in enumerate(parts, start=1)
    ]
    # Not visible before completion.
    assert code(error_of(s3.head_object, Bucket=bucket, Key="mp/complete.bin")) == ("404", 404)

    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp/complete.bin", UploadId=uid,
                                     MultipartUpload={"Parts": done})
    assert re.fullmatch(r'"[0-9a-f]{32}-3"', r["ETag"]), r["ETag"]
    expected = '"' + hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + '-3"'
    assert r["ETag"] == expected

    whole = b"".join(parts)
    head = s3.head_object(Bucket=bucket, Key="mp/complete.bin")
    assert head["ContentLength"] == len(whole)
    assert head["ETag"] == r["ETag"]
    assert head["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="mp/complete.bin")
    assert got["ServerSideEncryption"] == "AES256"
    assert hashlib.sha256(got["Body"].read()).hexdigest() == hashlib.sha256(whole).hexdigest()
    # A range across the part boundary.
    a = 5 * MiB - 10
    rr = s3.get_object(Bucket=bucket, Key="mp/complete.bin", Range=f"bytes={a}-{a + 19}")
    assert rr["Body"].read() == whole[a:a + 20]
    # The upload is gone once completed.
    e = error_of(s3.list_parts, Bucket=bucket, Key="mp/complete.bin", UploadId=uid)
    assert code(e) == ("NoSuchUpload", 404)


def test_multipart_abort(server, bucket):
    s3 = client_of(server)
    uid, _ = upload_parts(s3, bucket, "mp/abort.bin", [b"x" * 1024])
    assert s3.abort_multipart_upload(Bucket=bucket, Key="mp/abort.bin", UploadId=uid)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code(error_of(s3.list_parts, Bucket=bucket, Key="mp/abort.bin", UploadId=uid)) == ("NoSuchUpload", 404)
    e = error_of(s3.upload_part, Bucket=bucket, Key="mp/abort.bin", UploadId=uid, PartNumber=2, Body=b"y")
    assert code(e) == ("NoSuchUpload", 404)
    e = error_of(s3.complete_multipart_upload, Bucket=bucket, Key="mp/abort.bin", UploadId=uid,
                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": md5_etag(b"x" * 1024)}]})
    assert code(e) == ("NoSuchUpload", 404)
    assert code(error_of(s3.head_object, Bucket=bucket, Key="mp/abort.bin")) == ("404", 404)


def test_multipart_entity_too_small(server, bucket):
    s3 = client_of(server)
    uid, done = upload_parts(s3, bucket, "mp/small.bin", [b"a" * 1024, b"b" * 1024])
    e = error_of(s3.complete_multipart_upload, Bucket=bucket, Key="mp/small.bin", UploadId=uid,
                 MultipartUpload={"Parts": done})
    assert code(e) == ("EntityTooSmall", 400)
    assert code(error_of(s3.head_object, Bucket=bucket, Key="mp/small.bin")) == ("404", 404)


def test_multipart_invalid_part_order(server, bucket):
    s3 = client_of(server)
    uid, done = upload_parts(s3, bucket, "mp/order.bin", [os.urandom(5 * MiB), os.urandom(5 * MiB)])
    e = error_of(s3.complete_multipart_upload, Bucket=bucket, Key="mp/order.bin", UploadId=uid,
                 MultipartUpload={"Parts": list(reversed(done))})
    assert code(e) == ("InvalidPartOrder", 400)
    assert code(error_of(s3.head_object, Bucket=bucket, Key="mp/order.bin")) == ("404", 404)


def test_multipart_invalid_part(server, bucket):
    s3 = client_of(server)
    uid, done = upload_parts(s3, bucket, "mp/badetag.bin", [os.urandom(5 * MiB), b"last"])
    bad = [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}, done[1]]
    e = error_of(s3.complete_multipart_upload, Bucket=bucket, Key="mp/badetag.bin", UploadId=uid,
                 MultipartUpload={"Parts": bad})
    assert code(e) == ("InvalidPart", 400)
    # A part number that was never uploaded is invalid too (part 1 is 5 MiB, so the list
    # [1, 3] is ordered and not too small).
    missing = [done[0], {"PartNumber": 3, "ETag": md5_etag(b"last")}]
    e = error_of(s3.complete_multipart_upload, Bucket=bucket, Key="mp/badetag.bin", UploadId=uid,
                 MultipartUpload={"Parts": missing})
    assert code(e) == ("InvalidPart", 400)
    assert code(error_of(s3.head_object, Bucket=bucket, Key="mp/badetag.bin")) == ("404", 404)


def test_cli_cp_50_mib_round_trip(server, tmp_path):
    s3 = client_of(server)
    b = new_bucket(s3, "cli-cp")
    src = tmp_path / "big.bin"
    data = os.urandom(50 * MiB)
    src.write_bytes(data)
    aws_cli(server, "s3", "cp", str(src), f"s3://{b}/big.bin", "--only-show-errors")

    head = aws_cli(server, "s3api", "head-object", "--bucket", b, "--key", "big.bin")
    assert head["ContentLength"] == 50 * MiB
    assert re.fullmatch(r'"[0-9a-f]{32}-\d+"', head["ETag"]), head["ETag"]  # multipart above 8 MiB
    assert head["ServerSideEncryption"] == "AES256"

    dst = tmp_path / "back.bin"
    aws_cli(server, "s3", "cp", f"s3://{b}/big.bin", str(dst), "--only-show-errors")
    back = dst.read_bytes()
    assert len(back) == len(data)
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------
# Presigned URLs
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def presign_object(server, bucket):
    data = b"presigned firmware " + os.urandom(64)
    client_of(server).put_object(Bucket=bucket, Key="presign/fw.bin", Body=data)
    return bucket, "presign/fw.bin", data


def test_presigned_get_boto3(server, presign_object):
    b, k, data = presign_object
    url = client_of(server).generate_presigned_url("get_object", Params={"Bucket": b, "Key": k}, ExpiresIn=300)
    assert url.startswith(server.s3_endpoint + f"/{b}/")
    status, _, body = http_get(url)
    assert (status, body) == (200, data)
    status, hdrs, body = http_get(url, headers={"Range": "bytes=2-9"})
    assert (status, body) == (206, data[2:10])
    assert hdrs.get("Content-Range") == f"bytes 2-9/{len(data)}"


def test_presigned_get_cli(server, presign_object):
    b, k, data = presign_object
    url = aws_cli(server, "s3", "presign", f"s3://{b}/{k}", "--expires-in", "300")
    assert isinstance(url, str) and url.startswith("http://127.0.0.1"), url
    status, _, body = http_get(url)
    assert (status, body) == (200, data)
    status, _, body = http_get(url, headers={"Range": "bytes=0-4"})
    assert (status, body) == (206, data[:5])


def test_presigned_url_expires(server, presign_object):
    b, k, data = presign_object
    url = client_of(server).generate_presigned_url("get_object", Params={"Bucket": b, "Key": k}, ExpiresIn=1)
    time.sleep(2.2)
    status, _, body = http_get(url)
    assert (status, xml_error_code(body)) == (403, "AccessDenied"), body


def test_presigned_url_tampered_signature(server, presign_object):
    b, k, data = presign_object
    url = client_of(server).generate_presigned_url("get_object", Params={"Bucket": b, "Key": k}, ExpiresIn=300)
    m = re.search(r"([?&](?:X-Amz-Signature|Signature)=)([^&]+)", url)
    assert m, url
    sig = m.group(2)
    flipped = ("0" if sig[-1] != "0" else "1")
    bad_url = url[:m.start(2)] + sig[:-1] + flipped + url[m.end(2):]
    status, _, body = http_get(bad_url)
    assert status == 403, body
    assert data not in body
    # And the same URL for a different key is refused too.
    status, _, body = http_get(url.replace("/presign/fw.bin", "/presign/other.bin"))
    assert status == 403, body


# --------------------------------------------------------------------------------------
# Authentication and accounts
# --------------------------------------------------------------------------------------


def test_unknown_access_key(server):
    s3 = creds_client(server, "AKIANOSUCHKEY0000000", "whatever/secret/000000000000000000000000")
    assert code(error_of(s3.list_buckets)) == ("InvalidAccessKeyId", 403)


def test_wrong_secret(server):
    s3 = creds_client(server, ACCOUNT_A.root_key, "wrong/secret/0000000000000000000000000000")
    assert code(error_of(s3.list_buckets)) == ("SignatureDoesNotMatch", 403)
    assert code(error_of(s3.get_object, Bucket="anything-here", Key="k")) == ("SignatureDoesNotMatch", 403)


def test_anonymous_get_refused(server, presign_object):
    b, k, data = presign_object
    status, _, body = http_get(f"{server.s3_endpoint}/{b}/{k}")
    assert (status, xml_error_code(body)) == (403, "AccessDenied"), body
    assert data not in body
    status, _, body = http_get(f"{server.s3_endpoint}/")
    assert status == 403, body


def assumed_role_creds(server) -> dict:
    iam = make_client("iam", server)
    name = unique("s3role")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_A.id}:root"},
                       "Action": "sts:AssumeRole"}],
    }
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return make_client("sts", server).assume_role(RoleArn=role_arn(ACCOUNT_A.id, name),
                                                  RoleSessionName="s3-session")["Credentials"]


def session_token_creds(server) -> dict:
    alice = server.user("alice")
    sts = make_client("sts", server, alice.access_key_id, alice.secret_access_key)
    return sts.get_session_token(DurationSeconds=900)["Credentials"]


TEMP_CREDS = {"assume-role": assumed_role_creds, "session-token": session_token_creds}


@pytest.mark.parametrize("kind", list(TEMP_CREDS))
def test_temporary_credentials_work_on_s3(server, presign_object, kind):
    b, k, data = presign_object
    creds = TEMP_CREDS[kind](server)
    assert creds["AccessKeyId"].startswith("ASIA")
    s3 = creds_client(server, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert b in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket=b, Key=k)["Body"].read() == data
    s3.put_object(Bucket=b, Key=f"{k}.by-{kind}", Body=b"from temporary credentials")
    assert client_of(server).get_object(Bucket=b, Key=f"{k}.by-{kind}")["Body"].read() == b"from temporary credentials"


@pytest.mark.parametrize("token", ["no-token", "wrong-token"])
@pytest.mark.parametrize("kind", list(TEMP_CREDS))
def test_temporary_credentials_refused_without_their_token(server, presign_object, kind, token):
    b, k, data = presign_object
    creds = TEMP_CREDS[kind](server)
    tok = None if token == "no-token" else creds["SessionToken"][:-4] + "AAAA"
    s3 = creds_client(server, creds["AccessKeyId"], creds["SecretAccessKey"], tok)
    for call in (lambda: s3.get_object(Bucket=b, Key=k), s3.list_buckets):
        e = error_of(call)
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response


def test_other_account_refused(server, presign_object):
    b, k, data = presign_object
    s3b = client_of(server, ACCOUNT_B)
    assert code(error_of(s3b.get_object, Bucket=b, Key=k)) == ("AccessDenied", 403)
    assert code(error_of(s3b.put_object, Bucket=b, Key="intruder.bin", Body=b"evil")) == ("AccessDenied", 403)
    assert code(error_of(s3b.list_objects, Bucket=b)) == ("AccessDenied", 403)
    assert code(error_of(s3b.list_objects_v2, Bucket=b)) == ("AccessDenied", 403)
    # Nothing was written, and the object is intact.
    s3a = client_of(server)
    assert code(error_of(s3a.get_object, Bucket=b, Key="intruder.bin")) == ("NoSuchKey", 404)
    assert s3a.get_object(Bucket=b, Key=k)["Body"].read() == data


# --------------------------------------------------------------------------------------
# Encryption at rest
# --------------------------------------------------------------------------------------


def marker_data(size: int = 200 * 1024) -> tuple[bytes, bytes]:
    marker = f"PLAINTEXT-MARKER-{uuid.uuid4().hex}|".encode()
    return marker, (marker * (size // len(marker) + 1))[:size]


def files_containing(server, marker: bytes, min_size: int) -> tuple[list[str], int]:
    """(files under the data dir, SQLite files excepted, that contain `marker`, number of
    those files at least `min_size` bytes long)."""
    big_files, offenders = 0, []
    for dirpath, _, files in os.walk(server.data_dir):
        for f in files:
            if f.startswith("otatrail.db"):
                continue
            p = os.path.join(dirpath, f)
            try:
                with open(p, "rb") as fh:
                    content = fh.read()
            except FileNotFoundError:  # a temporary file that just went away
                continue
            if len(content) >= min_size:
                big_files += 1
            if marker in content:
                offenders.append(p)
    return offenders, big_files


@pytest.mark.skipif(EXTERNAL_S3, reason="object bytes live in the external store, which encrypts them (SSE AES256)")
def test_objects_encrypted_at_rest(server):
    s3 = client_of(server)
    b = new_bucket(s3, "atrest")
    marker, data = marker_data()
    s3.put_object(Bucket=b, Key="secret/fw.bin", Body=data)
    offenders, big_files = files_containing(server, marker, len(data))
    assert offenders == []
    assert big_files >= 1, "no file under the data directory is large enough to hold the object"
    assert s3.get_object(Bucket=b, Key="secret/fw.bin")["Body"].read() == data


@pytest.mark.skipif(EXTERNAL_S3, reason="object bytes live in the external store, which encrypts them (SSE AES256)")
def test_multipart_parts_encrypted_at_rest(server):
    s3 = client_of(server)
    b = new_bucket(s3, "atrest-mp")
    marker, data = marker_data()
    pending, _ = upload_parts(s3, b, "secret/pending.bin", [data])  # left in progress
    uid, done = upload_parts(s3, b, "secret/mp.bin", [data * 26, data])
    s3.complete_multipart_upload(Bucket=b, Key="secret/mp.bin", UploadId=uid, MultipartUpload={"Parts": done})
    offenders, _ = files_containing(server, marker, len(data))
    assert offenders == []
    assert s3.get_object(Bucket=b, Key="secret/mp.bin")["Body"].read() == data * 27
    s3.abort_multipart_upload(Bucket=b, Key="secret/pending.bin", UploadId=pending)


# --------------------------------------------------------------------------------------
# IoT streams pointing at S3 objects
# --------------------------------------------------------------------------------------


def test_iot_stream_from_s3_object(server):
    s3 = client_of(server)
    b = new_bucket(s3, "stream-src")
    s3.put_object(Bucket=b, Key="images/fw-1.bin", Body=b"\x7fELF" + os.urandom(1000))
    iot = iot_client(server)
    sid = unique("s3stream")
    r = iot.create_stream(streamId=sid, files=[s3file(0, b, "images/fw-1.bin")],
                          roleArn=role_arn(ACCOUNT_A.id), description="from s3")
    assert r["streamId"] == sid
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert [(f["fileId"], f["s3Location"]["bucket"], f["s3Location"]["key"]) for f in info["files"]] == [
        (0, b, "images/fw-1.bin")
    ]
    assert sid in [x["streamId"] for x in iot.list_streams()["streams"]]


def test_iot_stream_other_accounts_object_refused(server):
    b = bucket_name("b-owned")
    put_object(server, b, "images/theirs.bin", principal=server.root(ACCOUNT_B))
    iot = iot_client(server)
    e = error_of(iot.create_stream, streamId=unique("xacct"), files=[s3file(0, b, "images/theirs.bin")],
                 roleArn=role_arn(ACCOUNT_A.id))
    assert code(e) == ("InvalidRequestException", 400)
