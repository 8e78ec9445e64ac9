"""CloudTrail trails end to end: the trail API (Create/Get/Describe/List/Update/DeleteTrail,
Start/StopLogging, GetTrailStatus, Get/PutEventSelectors) and the delivery of log files to S3.

The module's server runs with `delivery_interval_seconds = 1`, so a log file is closed about a
second after its oldest record was made and delivery can be watched within a few seconds.
Log files are read back through the S3 port with boto3, the aws CLI (`aws s3 cp --recursive`)
and trailscraper (installed into its own venv, tests/.work/trailscraper-venv).

References: shared/reference/aws-api.md §10 (operations, errors, trail name rules),
shared/reference/cloudtrail.md §1 (log file keys and content) and §2 (records).

Isolation: records and trails are per account and region, and a region holds at most five
trails, so every test works in a region of its own and deletes its trails when it ends. Records
of a test's own calls are recognised by their requestID (the x-amzn-RequestId of the response);
LookupEvents of the same region is the ground truth a delivered record is compared with.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import (
    ACCOUNT_A,
    ACCOUNT_B,
    CONFIGURED_ACCOUNTS,
    REGION,
    REPO_ROOT,
    AccountSpec,
    aws_cli,
    clean_env,
    client_config,
    render_config,
    role_arn,
    s3_client,
)

A, B = ACCOUNT_A.id, ACCOUNT_B.id
CONFIG = "delivery_interval_seconds = 1\n" + render_config(CONFIGURED_ACCOUNTS)

# With a 1 s interval a record should be in S3 within ~5 s; allow some slack for a busy machine.
DELIVERY_TIMEOUT_S = 8.0
# How long to keep looking for records that must NOT be delivered, once later ones were.
SETTLE_S = 2.5

IOT = "iot.amazonaws.com"
STS = "sts.amazonaws.com"
CT = "cloudtrail.amazonaws.com"
S3 = "s3.amazonaws.com"

EVENT_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DATA_EVENT_NAMES = {
    "PutObject", "GetObject", "HeadObject", "DeleteObject", "DeleteObjects", "CopyObject",
    "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "GetObjectAttributes",
}

# One region per test (see the module docstring).
R_CREATE = "eu-west-1"
R_NAMES = "eu-west-2"
R_DUP, R_DUP_OTHER = "eu-north-1", "eu-south-1"
R_BUCKETS = "ap-east-1"
R_LIST, R_LIST_HOME = "ap-southeast-2", "ca-central-1"
R_UPDATE = "me-south-1"
R_HOME, R_AWAY = "af-south-1", "ap-southeast-1"
R_STATUS = "ap-northeast-3"
R_SELECTORS = "ap-northeast-2"
R_DELIVER, R_DELIVER_OTHER = "eu-central-1", "eu-central-2"
R_STOP = "us-west-1"
R_WRITE_ONLY = "sa-east-1"
R_ADVANCED = "il-central-1"
R_MULTI, R_MULTI_X, R_MULTI_Y = "us-west-2", "eu-west-3", "ap-south-1"
R_ERROR = "me-central-1"
R_CLI = "ap-south-2"
R_RESTART = "us-east-2"
R_REDIRECT = "ap-southeast-3"


# --------------------------------------------------------------------------------------
# Server, clients
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(server_factory):
    s = server_factory("configured", name="trails", start=False)
    s.config_path.write_text(CONFIG)
    s.start()
    yield s
    s.stop()


def make(service: str, server, account: AccountSpec = ACCOUNT_A, region: str = REGION, **cfg):
    return boto3.session.Session().client(
        service,
        region_name=region,
        endpoint_url=server.endpoint,
        aws_access_key_id=account.root_key,
        aws_secret_access_key=account.root_secret,
        config=client_config(**cfg),
    )


def ct(server, account: AccountSpec = ACCOUNT_A, region: str = REGION, **cfg):
    return make("cloudtrail", server, account, region, **cfg)


def s3_for(server, account: AccountSpec = ACCOUNT_A):
    return s3_client(server, account.root_key, account.root_secret)


def trail_arn(region: str, name: str, account: str = A) -> str:
    return f"arn:aws:cloudtrail:{region}:{account}:trail/{name}"


def tname(prefix: str = "trail") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def rid_of(resp: dict) -> str:
    rid = resp["ResponseMetadata"].get("RequestId")
    assert rid, f"response without request id: {resp['ResponseMetadata']}"
    return rid


def expect_error(fn, code: str, status: int, **kw) -> dict:
    """Calls fn(**kw), which must fail with exactly (code, status); returns the error response."""
    with pytest.raises(ClientError) as e:
        fn(**kw)
    resp = e.value.response
    got = (resp["Error"].get("Code"), resp["ResponseMetadata"]["HTTPStatusCode"])
    assert got == (code, status), (
        f"{fn.__name__}({kw}): expected {code} (HTTP {status}), got {got[0]} (HTTP {got[1]}): {resp['Error']}"
    )
    assert resp["Error"].get("Message"), f"{fn.__name__}: {code} without a message: {resp['Error']}"
    return resp


def make_bucket(server, account: AccountSpec = ACCOUNT_A, prefix: str = "trail-logs") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_for(server, account).create_bucket(Bucket=name)
    return name


def cloudtrail_bucket_policy(bucket: str, account: str) -> str:
    """The bucket policy the CloudTrail console writes for a trail of `account`."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AWSCloudTrailAclCheck",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:GetBucketAcl",
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Sid": "AWSCloudTrailWrite",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/AWSLogs/{account}/*",
                "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}},
            },
        ],
    })


@pytest.fixture
def trails(srv):
    """create(name, region=…, account=…, bucket=…, **kw): CreateTrail, deleted when the test ends."""
    made: list[tuple[AccountSpec, str, str]] = []

    def create(name: str | None = None, *, region: str, account: AccountSpec = ACCOUNT_A,
               bucket: str | None = None, **kw) -> dict:
        name = name or tname()
        bucket = bucket or make_bucket(srv, account)
        resp = ct(srv, account, region).create_trail(Name=name, S3BucketName=bucket, **kw)
        made.append((account, region, name))
        return resp

    yield create
    for account, region, name in reversed(made):
        try:
            ct(srv, account, region).delete_trail(Name=name)
        except ClientError:
            pass


# --------------------------------------------------------------------------------------
# Calls whose records are looked for
# --------------------------------------------------------------------------------------


class Calls:
    """Runs calls and remembers (label, requestID, readOnly expected?) of each."""

    def __init__(self):
        self.made: list[tuple[str, str]] = []

    def run(self, client, op: str, *, expect: str | None = None, **kw) -> dict:
        label = f"{client.meta.service_model.service_name}.{op}@{client.meta.region_name}"
        try:
            resp = getattr(client, op)(**kw)
            assert expect is None, f"{label} succeeded, expected {expect}"
        except ClientError as e:
            resp = e.response
            assert expect is not None, f"{label} failed: {resp['Error']}"
            assert resp["Error"]["Code"] == expect, f"{label}: {resp['Error']}"
        self.made.append((label, rid_of(resp)))
        return resp

    @property
    def rids(self) -> list[str]:
        return [r for _, r in self.made]

    def label(self, rid: str) -> str:
        return next(lbl for lbl, r in self.made if r == rid)


@pytest.fixture(scope="module")
def firmware(srv):
    """One firmware object per account, for CreateStream."""
    out = {}
    for acct in (ACCOUNT_A, ACCOUNT_B):
        bucket = make_bucket(srv, acct, "trail-fw")
        s3_for(srv, acct).put_object(Bucket=bucket, Key="fw/image.bin", Body=b"\x7fELF trail firmware")
        out[acct.id] = (bucket, "fw/image.bin")
    return out


def workload(srv, firmware, calls: Calls, region: str, account: AccountSpec = ACCOUNT_A) -> None:
    """A mix of IoT, STS and CloudTrail calls (reads, writes and a failure) in `region`."""
    iot = make("iot", srv, account, region)
    sts = make("sts", srv, account, region)
    trail_api = ct(srv, account, region)
    bucket, key = firmware[account.id]
    sid = f"trs-{uuid.uuid4().hex[:10]}"
    calls.run(iot, "create_stream", streamId=sid, roleArn=role_arn(account.id),
              files=[{"fileId": 0, "s3Location": {"bucket": bucket, "key": key}}], description="trail test")
    calls.run(iot, "describe_stream", streamId=sid)
    calls.run(iot, "update_stream", streamId=sid, description="updated")
    calls.run(iot, "list_streams")
    calls.run(sts, "get_caller_identity")
    calls.run(trail_api, "describe_trails")
    calls.run(trail_api, "get_trail", Name="no-such-trail-here", expect="TrailNotFoundException")
    calls.run(iot, "delete_stream", streamId=sid)


def lookup_records(srv, region: str, account: AccountSpec = ACCOUNT_A, **kw) -> list[dict]:
    pag = ct(srv, account, region).get_paginator("lookup_events")
    out = []
    for page in pag.paginate(**kw):
        out += [json.loads(e["CloudTrailEvent"]) for e in page["Events"]]
    return out


# --------------------------------------------------------------------------------------
# Log files
# --------------------------------------------------------------------------------------

KEY_RE_TEMPLATE = (
    r"^{prefix}AWSLogs/{acct}/CloudTrail/(?P<region>[a-z0-9-]+)/(?P<y>\d{{4}})/(?P<m>\d\d)/(?P<d>\d\d)/"
    r"{acct}_CloudTrail_(?P=region)_(?P<stamp>\d{{8}}T\d{{4}}Z)_[A-Za-z0-9]{{16}}\.json\.gz$"
)


def gunzip_one_member(body: bytes, where: str) -> bytes:
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    raw = d.decompress(body) + d.flush()
    assert d.eof, f"{where}: truncated gzip stream"
    assert d.unused_data == b"", f"{where}: data after the first gzip member ({len(d.unused_data)} bytes)"
    return raw


def parse_log_file(body: bytes, where: str) -> list[dict]:
    doc = json.loads(gunzip_one_member(body, where))
    assert isinstance(doc, dict) and list(doc) == ["Records"], f"{where}: top level is {list(doc)!r}"
    assert isinstance(doc["Records"], list), where
    assert doc["Records"], f"{where}: a log file without records"
    return doc["Records"]


def check_key(key: str, account: str, prefix: str | None) -> tuple[str, dt.datetime]:
    """Checks a log file key; returns (region, delivery minute)."""
    pat = KEY_RE_TEMPLATE.format(prefix=re.escape(prefix + "/") if prefix else "", acct=account)
    m = re.match(pat, key)
    assert m, f"log file key {key!r} does not match {pat}"
    stamp = dt.datetime.strptime(m["stamp"], "%Y%m%dT%H%MZ").replace(tzinfo=dt.timezone.utc)
    assert (m["y"], m["m"], m["d"]) == (m["stamp"][:4], m["stamp"][4:6], m["stamp"][6:8]), key
    now = dt.datetime.now(dt.timezone.utc)
    assert now - dt.timedelta(minutes=10) <= stamp <= now + dt.timedelta(minutes=1), f"{key}: delivery time {stamp} vs now {now}"
    return m["region"], stamp


def event_time(rec: dict) -> dt.datetime:
    return dt.datetime.strptime(rec["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


class LogBucket:
    """The log files of one bucket, read through the S3 port; files are cached by key
    (a delivered file never changes)."""

    def __init__(self, srv, bucket: str, account: AccountSpec = ACCOUNT_A, *, trail_account: str = A,
                 prefix: str | None = None):
        self.s3 = s3_for(srv, account)
        self.bucket = bucket
        self.trail_account = trail_account
        self.prefix = prefix
        self.files: dict[str, list[dict]] = {}
        self.regions: dict[str, str] = {}

    def refresh(self) -> "LogBucket":
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        for key in keys:
            if key in self.files:
                continue
            region, stamp = check_key(key, self.trail_account, self.prefix)
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            recs = parse_log_file(body, key)
            for r in recs:
                assert EVENT_TIME_RE.match(r.get("eventTime", "")), f"{key}: eventTime {r.get('eventTime')!r}"
                assert event_time(r) < stamp + dt.timedelta(minutes=1), (
                    f"{key}: record at {r['eventTime']} is later than the file's delivery minute {stamp}"
                )
                assert r["awsRegion"] == region, f"{key}: record of region {r['awsRegion']} in the {region} folder"
            self.files[key] = recs
            self.regions[key] = region
        return self

    def records(self) -> list[dict]:
        return [r for recs in self.files.values() for r in recs]

    def by_rid(self) -> dict[str, list[dict]]:
        out = defaultdict(list)
        for r in self.records():
            out[r.get("requestID")].append(r)
        return out

    def wait_for(self, rids, timeout: float = DELIVERY_TIMEOUT_S) -> "LogBucket":
        want = set(rids)
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            missing = want - set(self.by_rid())
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert not missing, (
            f"{len(missing)} of {len(want)} records not delivered to s3://{self.bucket} within {timeout:.0f}s: "
            f"{sorted(missing)}; files: {sorted(self.files)}"
        )
        return self

    def settle(self, seconds: float = SETTLE_S) -> "LogBucket":
        time.sleep(seconds)
        return self.refresh()

    def assert_no_duplicates(self) -> None:
        ids = Counter(r["eventID"] for r in self.records())
        dups = {k: v for k, v in ids.items() if v > 1}
        assert not dups, f"eventIDs delivered more than once: {dups}"


def assert_each_once(logs: LogBucket, calls: Calls, rids=None) -> None:
    by = logs.by_rid()
    for rid in rids if rids is not None else calls.rids:
        n = len(by.get(rid, []))
        assert n == 1, f"{calls.label(rid)} ({rid}) delivered {n} times"


# ======================================================================================
# Trail API
# ======================================================================================


def test_create_trail_response_and_defaults(srv, trails):
    bucket = make_bucket(srv)
    name = tname("create")
    resp = trails(name, region=R_CREATE, bucket=bucket)
    arn = trail_arn(R_CREATE, name)
    assert resp["Name"] == name
    assert resp["S3BucketName"] == bucket
    assert resp.get("S3KeyPrefix") in (None, ""), resp.get("S3KeyPrefix")
    assert resp["IncludeGlobalServiceEvents"] is True
    assert resp["IsMultiRegionTrail"] is False
    assert resp["TrailARN"] == arn
    assert resp["LogFileValidationEnabled"] is False
    assert resp["IsOrganizationTrail"] is False

    for ref in (name, arn):
        t = ct(srv, region=R_CREATE).get_trail(Name=ref)["Trail"]
        assert (t["Name"], t["S3BucketName"], t["TrailARN"], t["HomeRegion"]) == (name, bucket, arn, R_CREATE), t
        assert (t["IncludeGlobalServiceEvents"], t["IsMultiRegionTrail"], t["LogFileValidationEnabled"]) == (True, False, False), t
        assert t.get("IsOrganizationTrail") in (None, False), t

    # Every option.
    name2 = tname("options")
    resp = trails(name2, region=R_CREATE, bucket=bucket, S3KeyPrefix="ota/audit", IncludeGlobalServiceEvents=False,
                  EnableLogFileValidation=True, TagsList=[{"Key": "team", "Value": "ota"}, {"Key": "empty"}])
    assert resp["S3KeyPrefix"] == "ota/audit"
    assert (resp["IncludeGlobalServiceEvents"], resp["IsMultiRegionTrail"], resp["LogFileValidationEnabled"]) == (False, False, True)
    assert resp["TrailARN"] == trail_arn(R_CREATE, name2)
    t = ct(srv, region=R_CREATE).get_trail(Name=name2)["Trail"]
    assert (t["S3KeyPrefix"], t["IncludeGlobalServiceEvents"], t["LogFileValidationEnabled"]) == ("ota/audit", False, True), t

    name3 = tname("multi")
    resp = trails(name3, region=R_CREATE, bucket=bucket, IsMultiRegionTrail=True)
    assert (resp["IsMultiRegionTrail"], resp["IncludeGlobalServiceEvents"]) == (True, True), resp
    t = ct(srv, region=R_CREATE).get_trail(Name=name3)["Trail"]
    assert (t["IsMultiRegionTrail"], t["HomeRegion"]) == (True, R_CREATE), t

    # A new trail is not logging.
    st = ct(srv, region=R_CREATE).get_trail_status(Name=name)
    assert st["IsLogging"] is False, st


INVALID_NAMES = [
    "ab", "a" * 129, "-abc", "abc-", ".abc", "abc.", "_abc", "abc_",
    "a..b", "a-_b", "a._b", "a_-b", "a--b", "a__b", "a.-b",
    "192.168.5.4", "10.0.0.1", "my trail", "trail/1", "trail:1", "tr@il", "tráil",
]
VALID_NAMES = ["abc", "A" + "b" * 126 + "9", "ota.trail_1-x", "Trail1", "1ab"]


def test_trail_name_rules(srv):
    c = ct(srv, region=R_NAMES)
    bucket = make_bucket(srv)
    for bad in INVALID_NAMES:
        expect_error(c.create_trail, "InvalidTrailNameException", 400, Name=bad, S3BucketName=bucket)
    for good in VALID_NAMES:
        resp = c.create_trail(Name=good, S3BucketName=bucket)
        try:
            assert resp["Name"] == good
            assert resp["TrailARN"] == trail_arn(R_NAMES, good)
        finally:
            c.delete_trail(Name=good)
    # None of the invalid names left a trail behind.
    names = [t["Name"] for t in c.describe_trails(includeShadowTrails=False)["trailList"]]
    assert not set(names) & set(INVALID_NAMES), names


def test_trail_already_exists_is_per_account_and_region(srv, trails):
    name = tname("dup")
    b1, b2 = make_bucket(srv), make_bucket(srv)
    trails(name, region=R_DUP, bucket=b1)
    expect_error(ct(srv, region=R_DUP).create_trail, "TrailAlreadyExistsException", 400, Name=name, S3BucketName=b2)
    # The first trail is unchanged.
    assert ct(srv, region=R_DUP).get_trail(Name=name)["Trail"]["S3BucketName"] == b1
    # The same name in another region, and in another account, is another trail.
    other_region = trails(name, region=R_DUP_OTHER, bucket=b2)
    assert other_region["TrailARN"] == trail_arn(R_DUP_OTHER, name)
    other_account = trails(name, region=R_DUP, account=ACCOUNT_B)
    assert other_account["TrailARN"] == trail_arn(R_DUP, name, B)
    assert ct(srv, ACCOUNT_B, R_DUP).get_trail(Name=name)["Trail"]["TrailARN"] == trail_arn(R_DUP, name, B)
    assert ct(srv, region=R_DUP).get_trail(Name=name)["Trail"]["TrailARN"] == trail_arn(R_DUP, name)


def test_bucket_and_prefix_errors(srv, trails):
    c = ct(srv, region=R_BUCKETS)
    missing = f"no-such-bucket-{uuid.uuid4().hex[:10]}"
    name = tname("bkt")
    expect_error(c.create_trail, "S3BucketDoesNotExistException", 400, Name=name, S3BucketName=missing)

    # A bucket of account B: refused without a policy, and with a policy that does not name CloudTrail.
    foreign = make_bucket(srv, ACCOUNT_B, "foreign")
    expect_error(c.create_trail, "InsufficientS3BucketPolicyException", 403, Name=name, S3BucketName=foreign)
    s3b = s3_for(srv, ACCOUNT_B)
    s3b.put_bucket_policy(Bucket=foreign, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": A}, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{foreign}/*"}]}))
    expect_error(c.create_trail, "InsufficientS3BucketPolicyException", 403, Name=name, S3BucketName=foreign)
    # With the policy CloudTrail documents, the trail can use it.
    s3b.put_bucket_policy(Bucket=foreign, Policy=cloudtrail_bucket_policy(foreign, A))
    resp = trails(name, region=R_BUCKETS, bucket=foreign)
    assert resp["S3BucketName"] == foreign

    own = make_bucket(srv)
    ok_prefix = "p" * 200
    resp = trails(tname("pfx"), region=R_BUCKETS, bucket=own, S3KeyPrefix=ok_prefix)
    assert resp["S3KeyPrefix"] == ok_prefix
    expect_error(c.create_trail, "InvalidS3PrefixException", 400, Name=tname("pfx"), S3BucketName=own, S3KeyPrefix="p" * 201)

    # Unsupported features: a clear 4xx with a message, and no trail.
    unsupported = [
        {"KmsKeyId": f"arn:aws:kms:{R_BUCKETS}:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
        {"CloudWatchLogsLogGroupArn": f"arn:aws:logs:{R_BUCKETS}:{A}:log-group:trail:*",
         "CloudWatchLogsRoleArn": f"arn:aws:iam::{A}:role/ct-logs"},
        {"IsOrganizationTrail": True},
    ]
    for extra in unsupported:
        n = tname("unsup")
        with pytest.raises(ClientError) as e:
            c.create_trail(Name=n, S3BucketName=own, **extra)
        err = e.value.response
        status = err["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500, f"{extra}: HTTP {status} {err['Error']}"
        assert err["Error"].get("Code") and err["Error"].get("Message"), f"{extra}: {err['Error']}"
        expect_error(c.get_trail, "TrailNotFoundException", 404, Name=n)


def test_get_describe_and_list_trails(srv, trails):
    bucket = make_bucket(srv)
    local, multi, other = tname("list-local"), tname("list-multi"), tname("list-other")
    trails(local, region=R_LIST, bucket=bucket)
    trails(multi, region=R_LIST_HOME, bucket=bucket, IsMultiRegionTrail=True)
    trails(other, region=R_LIST_HOME, bucket=bucket)
    # Account B has a trail of the same name in R_LIST: never visible to account A.
    trails(local, region=R_LIST, account=ACCOUNT_B)
    mine = {local, multi, other}

    def describe(region, **kw):
        out = ct(srv, region=region).describe_trails(**kw)["trailList"]
        return {t["TrailARN"]: t for t in out if t["Name"] in mine}

    got = describe(R_LIST)
    assert set(got) == {trail_arn(R_LIST, local), trail_arn(R_LIST_HOME, multi)}, sorted(got)
    shadow = got[trail_arn(R_LIST_HOME, multi)]
    assert (shadow["Name"], shadow["HomeRegion"], shadow["IsMultiRegionTrail"], shadow["S3BucketName"]) == (
        multi, R_LIST_HOME, True, bucket), shadow
    assert (got[trail_arn(R_LIST, local)]["HomeRegion"], got[trail_arn(R_LIST, local)]["IsMultiRegionTrail"]) == (R_LIST, False)
    assert set(describe(R_LIST, includeShadowTrails=True)) == set(got)
    assert set(describe(R_LIST, includeShadowTrails=False)) == {trail_arn(R_LIST, local)}
    home = {trail_arn(R_LIST_HOME, multi), trail_arn(R_LIST_HOME, other)}
    assert set(describe(R_LIST_HOME)) == home
    assert set(describe(R_LIST_HOME, includeShadowTrails=False)) == home

    # trailNameList: names or ARNs.
    one = ct(srv, region=R_LIST).describe_trails(trailNameList=[local])["trailList"]
    assert [t["TrailARN"] for t in one] == [trail_arn(R_LIST, local)], one
    one = ct(srv, region=R_LIST).describe_trails(trailNameList=[trail_arn(R_LIST, local)])["trailList"]
    assert [t["TrailARN"] for t in one] == [trail_arn(R_LIST, local)], one
    b_view = ct(srv, ACCOUNT_B, R_LIST).describe_trails(trailNameList=[local])["trailList"]
    assert [t["TrailARN"] for t in b_view] == [trail_arn(R_LIST, local, B)], b_view

    # ListTrails: this region's trails and the multi-region trails of other regions.
    listed = [t for t in ct(srv, region=R_LIST).list_trails()["Trails"] if t["Name"] in mine]
    by_arn = {t["TrailARN"]: t for t in listed}
    assert by_arn[trail_arn(R_LIST, local)] == {"TrailARN": trail_arn(R_LIST, local), "Name": local, "HomeRegion": R_LIST}
    assert by_arn[trail_arn(R_LIST_HOME, multi)] == {"TrailARN": trail_arn(R_LIST_HOME, multi), "Name": multi, "HomeRegion": R_LIST_HOME}
    assert len(listed) == len(by_arn), f"a trail listed twice: {listed}"
    assert all(t["TrailARN"].split(":")[4] == A for t in ct(srv, region=R_LIST).list_trails()["Trails"])

    # GetTrail: unknown, other region's single-region trail, shadow of a multi-region trail.
    expect_error(ct(srv, region=R_LIST).get_trail, "TrailNotFoundException", 404, Name=tname("missing"))
    expect_error(ct(srv, region=R_LIST).get_trail, "TrailNotFoundException", 404, Name=other)
    t = ct(srv, region=R_LIST).get_trail(Name=multi)["Trail"]
    assert (t["TrailARN"], t["HomeRegion"], t["IsMultiRegionTrail"]) == (trail_arn(R_LIST_HOME, multi), R_LIST_HOME, True), t


def test_update_and_delete_trail(srv, trails):
    c = ct(srv, region=R_UPDATE)
    b1, b2 = make_bucket(srv), make_bucket(srv)
    name = tname("upd")
    trails(name, region=R_UPDATE, bucket=b1)
    resp = c.update_trail(Name=name, S3BucketName=b2, S3KeyPrefix="new/prefix", IsMultiRegionTrail=True,
                          EnableLogFileValidation=True)
    assert (resp["Name"], resp["S3BucketName"], resp["S3KeyPrefix"], resp["IsMultiRegionTrail"],
            resp["LogFileValidationEnabled"], resp["TrailARN"]) == (name, b2, "new/prefix", True, True, trail_arn(R_UPDATE, name)), resp
    t = c.get_trail(Name=trail_arn(R_UPDATE, name))["Trail"]
    assert (t["S3BucketName"], t["S3KeyPrefix"], t["IsMultiRegionTrail"], t["LogFileValidationEnabled"], t["HomeRegion"]) == (
        b2, "new/prefix", True, True, R_UPDATE), t
    resp = c.update_trail(Name=name, IsMultiRegionTrail=False, EnableLogFileValidation=False)
    assert (resp["S3BucketName"], resp["S3KeyPrefix"], resp["IsMultiRegionTrail"], resp["LogFileValidationEnabled"]) == (
        b2, "new/prefix", False, False), resp

    # Same errors as CreateTrail; a failed update changes nothing.
    expect_error(c.update_trail, "S3BucketDoesNotExistException", 400, Name=name, S3BucketName=f"no-such-{uuid.uuid4().hex[:10]}")
    expect_error(c.update_trail, "InvalidS3PrefixException", 400, Name=name, S3KeyPrefix="q" * 201)
    foreign = make_bucket(srv, ACCOUNT_B, "foreign")
    expect_error(c.update_trail, "InsufficientS3BucketPolicyException", 403, Name=name, S3BucketName=foreign)
    expect_error(c.update_trail, "TrailNotFoundException", 404, Name=tname("missing"), S3BucketName=b1)
    t = c.get_trail(Name=name)["Trail"]
    assert (t["S3BucketName"], t["S3KeyPrefix"]) == (b2, "new/prefix"), t

    c.delete_trail(Name=name)
    expect_error(c.get_trail, "TrailNotFoundException", 404, Name=name)
    expect_error(c.get_trail_status, "TrailNotFoundException", 404, Name=name)
    expect_error(c.delete_trail, "TrailNotFoundException", 404, Name=name)
    assert name not in [x["Name"] for x in c.describe_trails()["trailList"]]
    # Deleting by ARN works too; and the name can be used again.
    trails(name, region=R_UPDATE, bucket=b1)
    c.delete_trail(Name=trail_arn(R_UPDATE, name))
    expect_error(c.get_trail, "TrailNotFoundException", 404, Name=name)


def test_home_region_rules(srv, trails):
    bucket = make_bucket(srv)
    single, multi = tname("single"), tname("multi")
    trails(single, region=R_HOME, bucket=bucket)
    trails(multi, region=R_HOME, bucket=bucket, IsMultiRegionTrail=True)
    away = ct(srv, region=R_AWAY)

    # A single-region trail does not exist elsewhere.
    for op, kw in [
        (away.get_trail, {"Name": single}),
        (away.get_trail_status, {"Name": single}),
        (away.start_logging, {"Name": single}),
        (away.stop_logging, {"Name": single}),
        (away.update_trail, {"Name": single, "S3KeyPrefix": "x"}),
        (away.get_event_selectors, {"TrailName": single}),
        (away.delete_trail, {"Name": single}),
    ]:
        expect_error(op, "TrailNotFoundException", 404, **kw)

    # A multi-region trail is visible everywhere but changed only in its home region.
    t = away.get_trail(Name=multi)["Trail"]
    assert (t["HomeRegion"], t["TrailARN"]) == (R_HOME, trail_arn(R_HOME, multi)), t
    for op, kw in [
        (away.update_trail, {"Name": multi, "S3KeyPrefix": "x"}),
        (away.start_logging, {"Name": multi}),
        (away.stop_logging, {"Name": multi}),
        (away.put_event_selectors, {"TrailName": multi, "EventSelectors": [{"ReadWriteType": "WriteOnly"}]}),
        (away.delete_trail, {"Name": multi}),
    ]:
        expect_error(op, "InvalidHomeRegionException", 400, **kw)
    home = ct(srv, region=R_HOME)
    t = home.get_trail(Name=multi)["Trail"]
    assert t.get("S3KeyPrefix") in (None, ""), t
    assert home.get_trail_status(Name=multi)["IsLogging"] is False
    assert home.get_trail(Name=single)["Trail"]["HomeRegion"] == R_HOME


def _dt(v) -> dt.datetime:
    assert isinstance(v, dt.datetime), f"not a timestamp: {v!r}"
    return v


def test_logging_status(srv, trails):
    c = ct(srv, region=R_STATUS)
    bucket = make_bucket(srv)
    name = tname("status")
    trails(name, region=R_STATUS, bucket=bucket)
    st = c.get_trail_status(Name=name)
    assert st["IsLogging"] is False, st
    assert "LatestDeliveryTime" not in st and "StartLoggingTime" not in st, st

    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    assert c.start_logging(Name=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    st = c.get_trail_status(Name=trail_arn(R_STATUS, name))
    assert st["IsLogging"] is True, st
    started = _dt(st["StartLoggingTime"])
    assert before <= started <= after, (before, started, after)
    # Starting again keeps it logging.
    c.start_logging(Name=name)
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    st = c.get_trail_status(Name=name)
    assert st["IsLogging"] is True, st
    started = _dt(st["StartLoggingTime"])
    assert before <= started <= after, (before, started, after)

    # A delivery happens (the GetTrailStatus calls above are recorded) and is reported.
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        st = c.get_trail_status(Name=name)
        if "LatestDeliveryTime" in st:
            break
        time.sleep(0.3)
    assert "LatestDeliveryTime" in st, f"no LatestDeliveryTime after {DELIVERY_TIMEOUT_S}s: {st}"
    delivered = _dt(st["LatestDeliveryTime"])
    assert before <= delivered <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2), delivered
    assert not st.get("LatestDeliveryError"), st
    keys = [o["Key"] for o in s3_for(srv).list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys, "GetTrailStatus reports a delivery but the bucket is empty"

    before_stop = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    c.stop_logging(Name=name)
    st = c.get_trail_status(Name=name)
    assert st["IsLogging"] is False, st
    stopped = _dt(st["StopLoggingTime"])
    assert before_stop <= stopped <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2), stopped
    assert _dt(st["StartLoggingTime"]) == started, st
    assert stopped >= started, st

    expect_error(c.start_logging, "TrailNotFoundException", 404, Name=tname("missing"))
    expect_error(c.stop_logging, "TrailNotFoundException", 404, Name=tname("missing"))
    expect_error(c.get_trail_status, "TrailNotFoundException", 404, Name=tname("missing"))


DEFAULT_SELECTORS = [{"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": [],
                      "ExcludeManagementEventSources": []}]


def test_event_selectors_api(srv, trails):
    c = ct(srv, region=R_SELECTORS)
    name = tname("sel")
    arn = trail_arn(R_SELECTORS, name)
    trails(name, region=R_SELECTORS)
    got = c.get_event_selectors(TrailName=name)
    assert got["TrailARN"] == arn
    assert got["EventSelectors"] == DEFAULT_SELECTORS, got
    assert not got.get("AdvancedEventSelectors"), got

    write_only = [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]
    put = c.put_event_selectors(TrailName=name, EventSelectors=write_only)
    want = [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True, "DataResources": [],
             "ExcludeManagementEventSources": []}]
    assert put["TrailARN"] == arn
    assert put["EventSelectors"] == want, put
    got = c.get_event_selectors(TrailName=arn)
    assert got["EventSelectors"] == want, got

    data = [{"ReadWriteType": "All", "IncludeManagementEvents": True,
             "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::some-bucket/"]}]}]
    expect_error(c.put_event_selectors, "InvalidEventSelectorsException", 400, TrailName=name, EventSelectors=data)
    six = [{"ReadWriteType": "All", "IncludeManagementEvents": True}] * 6
    expect_error(c.put_event_selectors, "InvalidEventSelectorsException", 400, TrailName=name, EventSelectors=six)
    assert c.get_event_selectors(TrailName=name)["EventSelectors"] == want
    five = [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}] * 5
    assert len(c.put_event_selectors(TrailName=name, EventSelectors=five)["EventSelectors"]) == 5

    adv = [{"Name": "iot writes", "FieldSelectors": [
        {"Field": "eventSource", "Equals": [IOT]}, {"Field": "readOnly", "Equals": ["false"]}]}]
    put = c.put_event_selectors(TrailName=name, AdvancedEventSelectors=adv)
    assert put["AdvancedEventSelectors"] == adv, put
    got = c.get_event_selectors(TrailName=name)
    assert got["AdvancedEventSelectors"] == adv, got
    assert not got.get("EventSelectors"), got

    expect_error(c.get_event_selectors, "TrailNotFoundException", 404, TrailName=tname("missing"))
    expect_error(c.put_event_selectors, "TrailNotFoundException", 404, TrailName=tname("missing"), EventSelectors=write_only)


# ======================================================================================
# Delivery
# ======================================================================================


def start_trail(srv, trails, region: str, account: AccountSpec = ACCOUNT_A, prefix: str | None = None,
                **kw) -> tuple[str, str]:
    """A logging trail to a new bucket of `account`; returns (name, bucket)."""
    bucket = make_bucket(srv, account)
    name = tname("dlv")
    extra = {"S3KeyPrefix": prefix} if prefix else {}
    trails(name, region=region, account=account, bucket=bucket, **extra, **kw)
    ct(srv, account, region).start_logging(Name=name)
    return name, bucket


def test_delivery_files_records_and_accounts(srv, trails, firmware):
    """Keys, gzip framing and content of the files; each call once; only the trail's account and region."""
    prefix = "ota/audit"
    t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    name, bucket = start_trail(srv, trails, R_DELIVER, prefix=prefix)
    # Account B logs the same region to its own bucket.
    _, b_bucket = start_trail(srv, trails, R_DELIVER, ACCOUNT_B)

    mine, theirs, elsewhere = Calls(), Calls(), Calls()
    workload(srv, firmware, mine, R_DELIVER)
    workload(srv, firmware, theirs, R_DELIVER, ACCOUNT_B)
    workload(srv, firmware, elsewhere, R_DELIVER_OTHER)   # A, but another region
    workload(srv, firmware, mine, R_DELIVER)

    logs = LogBucket(srv, bucket, prefix=prefix).wait_for(mine.rids)
    b_logs = LogBucket(srv, b_bucket, ACCOUNT_B, trail_account=B).wait_for(theirs.rids)
    logs.settle()
    b_logs.refresh()

    assert_each_once(logs, mine)
    assert_each_once(b_logs, theirs)
    logs.assert_no_duplicates()
    b_logs.assert_no_duplicates()
    assert set(logs.regions.values()) == {R_DELIVER}, logs.regions
    by = logs.by_rid()
    for calls, what in ((theirs, "account B's"), (elsewhere, f"account A's {R_DELIVER_OTHER}")):
        leaked = [calls.label(r) for r in calls.rids if r in by]
        assert not leaked, f"{what} calls delivered by account A's {R_DELIVER} trail: {leaked}"
    b_by = b_logs.by_rid()
    for rid in mine.rids:
        assert rid not in b_by, f"account A's {mine.label(rid)} delivered to account B's trail"
    for r in logs.records():
        assert (r["recipientAccountId"], r["awsRegion"]) == (A, R_DELIVER), r
    for r in b_logs.records():
        assert (r["recipientAccountId"], r["awsRegion"]) == (B, R_DELIVER), r

    # Delivered records are the full records, as LookupEvents has them.
    truth = defaultdict(list)
    for r in lookup_records(srv, R_DELIVER):
        truth[r["requestID"]].append(r)
    for rid in mine.rids:
        assert len(truth[rid]) == 1, f"{mine.label(rid)}: {len(truth[rid])} records in LookupEvents"
        assert by[rid][0] == truth[rid][0], f"{mine.label(rid)}: delivered record differs from LookupEvents'"
    names = sorted(by[rid][0]["eventName"] for rid in mine.rids)
    assert names == sorted(["CreateStream", "DescribeStream", "UpdateStream", "ListStreams", "GetCallerIdentity",
                            "DescribeTrails", "GetTrail", "DeleteStream"] * 2), names
    failed = [by[rid][0] for rid in mine.rids if by[rid][0].get("errorCode")]
    assert [r["errorCode"] for r in failed] == ["TrailNotFoundException"] * 2
    for r in logs.records():
        assert t0 - dt.timedelta(seconds=1) <= event_time(r), f"record older than the trail: {r['eventTime']}"

    st = ct(srv, region=R_DELIVER).get_trail_status(Name=name)
    assert "LatestDeliveryTime" in st and not st.get("LatestDeliveryError"), st


def thread_nices(pid: int) -> dict[str, set[int]]:
    """Nice values of a process's threads, by thread name (Linux, /proc); the main thread's
    under "main"."""
    out: dict[str, set[int]] = defaultdict(set)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = "main" if task.name == str(pid) else stat[stat.index("(") + 1:stat.rindex(")")]
        out[name].add(int(stat[stat.rindex(")") + 2:].split()[16]))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_delivery_runs_below_the_api_calls_priority(srv, trails, firmware):
    """The deliverer runs on a thread of its own ("trail-delivery") whose nice value is 10 above
    the server's (at most 19); every other thread, the runtime workers that answer API calls
    among them, keeps the server's. And it still delivers."""
    nices = thread_nices(srv.proc.pid)
    (server,) = nices.pop("main")
    assert nices.pop("trail-delivery", None) == {min(server + 10, 19)}, nices
    assert all(n == {server} for n in nices.values()), nices
    _, bucket = start_trail(srv, trails, R_DELIVER)
    calls = Calls()
    workload(srv, firmware, calls, R_DELIVER)
    logs = LogBucket(srv, bucket).wait_for(calls.rids)
    assert_each_once(logs, calls)


def test_stop_and_start_logging(srv, trails, firmware):
    c = ct(srv, region=R_STOP)
    bucket = make_bucket(srv)
    name = tname("stop")
    trails(name, region=R_STOP, bucket=bucket)
    before, first, stopped, second = Calls(), Calls(), Calls(), Calls()
    workload(srv, firmware, before, R_STOP)          # the trail is not logging yet
    c.start_logging(Name=name)
    workload(srv, firmware, first, R_STOP)
    c.stop_logging(Name=name)
    workload(srv, firmware, stopped, R_STOP)
    logs = LogBucket(srv, bucket)
    logs.wait_for(first.rids)
    c.start_logging(Name=name)
    workload(srv, firmware, second, R_STOP)
    logs.wait_for(second.rids).settle()

    assert_each_once(logs, first)
    assert_each_once(logs, second)
    logs.assert_no_duplicates()
    by = logs.by_rid()
    leaked = [before.label(r) for r in before.rids if r in by] + [stopped.label(r) for r in stopped.rids if r in by]
    assert not leaked, f"calls made while the trail was not logging were delivered: {leaked}"


def test_write_only_selector(srv, trails, firmware):
    c = ct(srv, region=R_WRITE_ONLY)
    bucket = make_bucket(srv)
    name = tname("wo")
    trails(name, region=R_WRITE_ONLY, bucket=bucket)
    c.put_event_selectors(TrailName=name, EventSelectors=[{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}])
    c.start_logging(Name=name)
    calls = Calls()
    workload(srv, firmware, calls, R_WRITE_ONLY)
    workload(srv, firmware, calls, R_WRITE_ONLY)

    truth = {r["requestID"]: r for r in lookup_records(srv, R_WRITE_ONLY) if r["requestID"] in set(calls.rids)}
    assert set(truth) == set(calls.rids), "LookupEvents misses some calls"
    writes = [rid for rid in calls.rids if truth[rid]["readOnly"] is False]
    reads = [rid for rid in calls.rids if truth[rid]["readOnly"] is True]
    assert len(writes) == 6 and len(reads) == 10, (len(writes), len(reads))
    logs = LogBucket(srv, bucket).wait_for(writes).settle()
    assert_each_once(logs, calls, writes)
    by = logs.by_rid()
    assert not [calls.label(r) for r in reads if r in by], "read-only calls delivered by a WriteOnly trail"
    ro = [(r["eventName"], r["requestID"]) for r in logs.records() if r["readOnly"] is not False]
    assert not ro, f"read-only records delivered by a WriteOnly trail: {ro}"
    logs.assert_no_duplicates()


ADVANCED = [
    {"Name": "iot writes", "FieldSelectors": [
        {"Field": "eventSource", "Equals": [IOT]}, {"Field": "readOnly", "Equals": ["false"]}]},
    {"Name": "caller identity", "FieldSelectors": [{"Field": "eventName", "StartsWith": ["GetCaller"]}]},
    {"Name": "trail reads but status", "FieldSelectors": [
        {"Field": "eventSource", "Equals": [CT]}, {"Field": "eventName", "NotEquals": ["GetTrailStatus", "LookupEvents"]}]},
]


def advanced_match(selectors: list[dict], rec: dict) -> bool:
    facts = {"eventName": rec["eventName"], "eventSource": rec["eventSource"],
             "readOnly": "true" if rec["readOnly"] else "false"}

    def field_ok(f: dict) -> bool:
        v = facts[f["Field"]]
        checks = [
            ("Equals", lambda x: v == x, True), ("StartsWith", v.startswith, True), ("EndsWith", v.endswith, True),
            ("NotEquals", lambda x: v == x, False), ("NotStartsWith", v.startswith, False),
            ("NotEndsWith", v.endswith, False),
        ]
        for key, pred, positive in checks:
            if key in f and any(pred(x) for x in f[key]) != positive:
                return False
        return True

    return any(all(field_ok(f) for f in s["FieldSelectors"]) for s in selectors)


def test_advanced_event_selectors_filter_delivery(srv, trails, firmware):
    c = ct(srv, region=R_ADVANCED)
    bucket = make_bucket(srv)
    name = tname("adv")
    trails(name, region=R_ADVANCED, bucket=bucket)
    c.put_event_selectors(TrailName=name, AdvancedEventSelectors=ADVANCED)
    c.start_logging(Name=name)
    calls = Calls()
    workload(srv, firmware, calls, R_ADVANCED)
    calls.run(c, "get_trail_status", Name=name)
    calls.run(c, "get_trail", Name=name)
    workload(srv, firmware, calls, R_ADVANCED)

    truth = {r["requestID"]: r for r in lookup_records(srv, R_ADVANCED) if r["requestID"] in set(calls.rids)}
    assert set(truth) == set(calls.rids), "LookupEvents misses some calls"
    selected = [rid for rid in calls.rids if advanced_match(ADVANCED, truth[rid])]
    skipped = [rid for rid in calls.rids if rid not in selected]
    names = sorted(truth[r]["eventName"] for r in selected)
    assert names == sorted(["CreateStream", "UpdateStream", "DeleteStream", "GetCallerIdentity", "DescribeTrails",
                            "GetTrail"] * 2 + ["GetTrail"]), names
    logs = LogBucket(srv, bucket).wait_for(selected).settle()
    assert_each_once(logs, calls, selected)
    by = logs.by_rid()
    assert not [calls.label(r) for r in skipped if r in by], "records no advanced selector matches were delivered"
    bad = [(r["eventSource"], r["eventName"], r["readOnly"]) for r in logs.records() if not advanced_match(ADVANCED, r)]
    assert not bad, f"delivered records no selector matches: {bad}"
    logs.assert_no_duplicates()


def test_multi_region_trail_delivers_every_region(srv, trails, firmware):
    multi_name, multi_bucket = start_trail(srv, trails, R_MULTI, IsMultiRegionTrail=True)
    _, single_bucket = start_trail(srv, trails, R_MULTI)
    per_region = {r: Calls() for r in (R_MULTI, R_MULTI_X, R_MULTI_Y)}
    for region, calls in per_region.items():
        workload(srv, firmware, calls, region)
    every = [rid for calls in per_region.values() for rid in calls.rids]
    multi = LogBucket(srv, multi_bucket).wait_for(every)
    single = LogBucket(srv, single_bucket).wait_for(per_region[R_MULTI].rids)
    multi.settle()
    single.refresh()

    by_region_key = defaultdict(set)
    for key, recs in multi.files.items():
        for r in recs:
            by_region_key[multi.regions[key]].add(r["requestID"])
    for region, calls in per_region.items():
        for rid in calls.rids:
            assert rid in by_region_key[region], f"{calls.label(rid)} not in a {region} log file"
        assert_each_once(multi, calls)
    assert {R_MULTI, R_MULTI_X, R_MULTI_Y} <= set(multi.regions.values())
    multi.assert_no_duplicates()

    # The single-region trail of the same home region sees only its region.
    assert set(single.regions.values()) == {R_MULTI}, single.regions
    sby = single.by_rid()
    for region in (R_MULTI_X, R_MULTI_Y):
        calls = per_region[region]
        assert not [calls.label(r) for r in calls.rids if r in sby], f"{region} calls in a single-region {R_MULTI} trail"
    assert_each_once(single, per_region[R_MULTI])
    assert ct(srv, region=R_MULTI).get_trail_status(Name=multi_name)["IsLogging"] is True


def test_s3_object_calls_never_delivered(srv, trails):
    """A trail of the region S3 calls are recorded in gets bucket-level calls but no object reads/writes
    (neither the test's nor the deliverer's own log file writes)."""
    name, log_bucket = start_trail(srv, trails, REGION)
    s3 = s3_for(srv)
    b = f"dataev-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="fw/one.bin", Body=b"one")
    s3.get_object(Bucket=b, Key="fw/one.bin")["Body"].read()
    s3.head_object(Bucket=b, Key="fw/one.bin")
    s3.copy_object(Bucket=b, Key="fw/two.bin", CopySource={"Bucket": b, "Key": "fw/one.bin"})
    s3.delete_object(Bucket=b, Key="fw/two.bin")
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": B}, "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}]}))

    def of_b(records):
        return sorted(r["eventName"] for r in records
                      if r["eventSource"] == S3 and (r.get("requestParameters") or {}).get("bucketName") == b)

    logs = LogBucket(srv, log_bucket)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while of_b(logs.refresh().records()) != ["CreateBucket", "PutBucketPolicy"] and time.monotonic() < deadline:
        time.sleep(0.3)
    logs.settle()
    assert of_b(logs.records()) == ["CreateBucket", "PutBucketPolicy"], of_b(logs.records())
    data = [(r["eventName"], r.get("requestParameters")) for r in logs.records() if r["eventName"] in DATA_EVENT_NAMES]
    assert not data, f"S3 data events delivered: {data}"
    own = [r["eventName"] for r in logs.records() if (r.get("requestParameters") or {}).get("bucketName") == log_bucket]
    assert not own, f"calls on the log bucket itself were delivered: {own}"
    logs.assert_no_duplicates()
    truth = {r["eventID"]: r for r in lookup_records(srv, REGION, LookupAttributes=[
        {"AttributeKey": "EventSource", "AttributeValue": S3}]) if (r.get("requestParameters") or {}).get("bucketName") == b}
    delivered = {r["eventID"]: r for r in logs.records() if (r.get("requestParameters") or {}).get("bucketName") == b}
    assert delivered == truth


def test_update_trail_moves_delivery(srv, trails, firmware):
    c = ct(srv, region=R_REDIRECT)
    name, b1 = start_trail(srv, trails, R_REDIRECT)
    first = Calls()
    workload(srv, firmware, first, R_REDIRECT)
    old = LogBucket(srv, b1).wait_for(first.rids)
    b2 = make_bucket(srv)
    resp = c.update_trail(Name=name, S3BucketName=b2, S3KeyPrefix="moved/here")
    assert (resp["S3BucketName"], resp["S3KeyPrefix"]) == (b2, "moved/here"), resp
    assert c.get_trail_status(Name=name)["IsLogging"] is True
    second = Calls()
    workload(srv, firmware, second, R_REDIRECT)
    new = LogBucket(srv, b2, prefix="moved/here").wait_for(second.rids).settle()
    old.refresh()
    assert_each_once(old, first)
    assert_each_once(new, second)
    assert not [second.label(r) for r in second.rids if r in old.by_rid()], "calls after UpdateTrail went to the old bucket"
    assert not [first.label(r) for r in first.rids if r in new.by_rid()], "calls delivered before UpdateTrail delivered again"


def empty_and_delete_bucket(s3, bucket: str) -> None:
    for _ in range(20):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=o["Key"])
        try:
            s3.delete_bucket(Bucket=bucket)
            return
        except ClientError as e:
            if e.response["Error"]["Code"] != "BucketNotEmpty":
                raise
    raise AssertionError(f"could not delete {bucket}: a log file keeps arriving")


def test_delivery_error_and_recovery(srv, trails, firmware):
    c = ct(srv, region=R_ERROR)
    name, bucket = start_trail(srv, trails, R_ERROR)
    s3 = s3_for(srv)
    first = Calls()
    workload(srv, firmware, first, R_ERROR)
    LogBucket(srv, bucket).wait_for(first.rids)
    st = c.get_trail_status(Name=name)
    assert "LatestDeliveryTime" in st and not st.get("LatestDeliveryError"), st

    empty_and_delete_bucket(s3, bucket)
    gone = Calls()
    workload(srv, firmware, gone, R_ERROR)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        st = c.get_trail_status(Name=name)
        if st.get("LatestDeliveryError"):
            break
        time.sleep(0.3)
    assert st.get("LatestDeliveryError"), f"no LatestDeliveryError while the bucket is gone: {st}"
    assert "NoSuchBucket" in st["LatestDeliveryError"], st["LatestDeliveryError"]
    assert st["IsLogging"] is True
    failed_at = dt.datetime.now(dt.timezone.utc)

    s3.create_bucket(Bucket=bucket)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        st = c.get_trail_status(Name=name)
        if not st.get("LatestDeliveryError") and _dt(st["LatestDeliveryTime"]) >= failed_at - dt.timedelta(seconds=1):
            break
        time.sleep(0.3)
    assert not st.get("LatestDeliveryError"), f"LatestDeliveryError not cleared after the bucket came back: {st}"
    assert _dt(st["LatestDeliveryTime"]) >= failed_at - dt.timedelta(seconds=1), st
    # The records made while the bucket was gone are delivered, once, to the new bucket.
    logs = LogBucket(srv, bucket).wait_for(gone.rids).settle()
    assert_each_once(logs, gone)
    logs.assert_no_duplicates()
    leaked = [first.label(r) for r in first.rids if r in logs.by_rid()]
    assert not leaked, f"records delivered before the bucket was deleted were delivered again: {leaked}"


# --------------------------------------------------------------------------------------
# Real tools: aws s3 cp, trailscraper
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def downloaded_logs(srv, firmware, tmp_path_factory):
    """A trail's files, delivered and then downloaded with `aws s3 cp --recursive`."""
    c = ct(srv, region=R_CLI)
    bucket = make_bucket(srv)
    name = tname("cli")
    c.create_trail(Name=name, S3BucketName=bucket, S3KeyPrefix="cli")
    try:
        c.start_logging(Name=name)
        calls = Calls()
        workload(srv, firmware, calls, R_CLI)
        LogBucket(srv, bucket, prefix="cli").wait_for(calls.rids)
        c.stop_logging(Name=name)
        time.sleep(SETTLE_S)
    finally:
        c.delete_trail(Name=name)
    out = tmp_path_factory.mktemp("cli-logs")
    aws_cli(srv, "s3", "cp", "--recursive", f"s3://{bucket}/", str(out), "--only-show-errors")
    return out, calls


def test_aws_cli_downloads_log_files(downloaded_logs):
    out, calls = downloaded_logs
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files, f"aws s3 cp downloaded nothing into {out}"
    seen = []
    for p in files:
        rel = p.relative_to(out).as_posix()
        check_key(rel, A, "cli")
        doc = json.loads(gunzip_one_member(p.read_bytes(), rel))
        assert list(doc) == ["Records"], rel
        for r in doc["Records"]:
            assert EVENT_TIME_RE.match(r["eventTime"]), f"{rel}: eventTime {r['eventTime']!r}"
            seen.append(r["requestID"])
    counts = Counter(seen)
    for rid in calls.rids:
        assert counts[rid] == 1, f"{calls.label(rid)}: {counts[rid]} times in the downloaded files"


TRAILSCRAPER_VENV = REPO_ROOT / "tests" / ".work" / "trailscraper-venv"
NETWORK_HINTS = ("NewConnectionError", "Temporary failure in name resolution", "Name or service not known",
                 "No matching distribution found", "Could not find a version", "Network is unreachable",
                 "Connection refused", "ConnectTimeout", "ReadTimeout", "ProxyError", "Failed to establish")


@pytest.fixture(scope="session")
def trailscraper_bin() -> Path:
    exe = TRAILSCRAPER_VENV / "bin" / "trailscraper"
    env = clean_env({"PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if exe.exists():
        r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, env=env, timeout=60)
        if r.returncode == 0 and "0.10.0" in r.stdout:
            return exe
        shutil.rmtree(TRAILSCRAPER_VENV)
    TRAILSCRAPER_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(TRAILSCRAPER_VENV)], check=True, timeout=120)
    pip = [str(TRAILSCRAPER_VENV / "bin" / "python"), "-m", "pip", "install", "trailscraper==0.10.0"]
    try:
        r = subprocess.run(pip, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        shutil.rmtree(TRAILSCRAPER_VENV, ignore_errors=True)
        pytest.skip("pip install trailscraper==0.10.0 timed out (no network?)")
    if r.returncode != 0:
        shutil.rmtree(TRAILSCRAPER_VENV, ignore_errors=True)
        tail = (r.stdout + r.stderr)[-1500:]
        if any(h in r.stdout + r.stderr for h in NETWORK_HINTS):
            pytest.skip(f"cannot install trailscraper==0.10.0 into its venv (no network?):\n{tail}")
        pytest.fail(f"pip install trailscraper==0.10.0 failed:\n{tail}")
    return exe


def test_trailscraper_reads_delivered_files(downloaded_logs, trailscraper_bin, tmp_path):
    out, calls = downloaded_logs
    yesterday = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    cmd = [str(trailscraper_bin), "select", "--log-dir", str(out), "--from", yesterday, "--to", "now"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=clean_env(home=tmp_path))
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\n{r.stderr}"
    assert "Invalid filename" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    printed = doc["Records"]
    by = defaultdict(list)
    for rec in printed:
        by[rec.get("requestID")].append(rec["eventName"])
    names = {rec["eventName"] for rec in printed}
    want = {"CreateStream", "DescribeStream", "UpdateStream", "ListStreams", "GetCallerIdentity", "DescribeTrails",
            "GetTrail", "DeleteStream"}
    assert want <= names, f"trailscraper printed {sorted(names)}; stderr:\n{r.stderr}"
    for rid in calls.rids:
        assert len(by[rid]) == 1, f"{calls.label(rid)}: printed {len(by[rid])} times"


# --------------------------------------------------------------------------------------
# Restarts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_undelivered_records_delivered_once_after_restart(server_factory, sig):
    # A 3 s interval, so that the records of the calls below are certainly still pending at the signal.
    s = server_factory("configured", name=f"trail-restart-{sig.name.lower()}", start=False)
    s.config_path.write_text("delivery_interval_seconds = 3\n" + render_config(CONFIGURED_ACCOUNTS))
    s.start()
    try:
        fw_bucket = make_bucket(s, prefix="trail-fw")
        s3_for(s).put_object(Bucket=fw_bucket, Key="fw/image.bin", Body=b"fw")
        fw = {A: (fw_bucket, "fw/image.bin")}
        c = ct(s, region=R_RESTART)
        bucket = make_bucket(s)
        name = tname("restart")
        c.create_trail(Name=name, S3BucketName=bucket)
        c.start_logging(Name=name)
        before = Calls()
        workload(s, fw, before, R_RESTART)
        pending = set(before.rids) - set(LogBucket(s, bucket).refresh().by_rid())
        rc, needed_kill = s.stop(sig)
        if sig == signal.SIGTERM:
            assert not needed_kill, f"otatrail did not exit within 5 s of SIGTERM (exit code {rc})"
        s.start(s.port)

        c = ct(s, region=R_RESTART)
        assert c.get_trail_status(Name=name)["IsLogging"] is True
        after = Calls()
        workload(s, fw, after, R_RESTART)
        logs = LogBucket(s, bucket).wait_for(before.rids + after.rids, timeout=DELIVERY_TIMEOUT_S + 4)
        logs.settle(3.5)
        assert pending, "every record was delivered before the signal: the restart was not exercised"
        assert_each_once(logs, before)
        assert_each_once(logs, after)
        logs.assert_no_duplicates()
    finally:
        s.stop()
