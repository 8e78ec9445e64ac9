"""One bucket for many accounts, regions and an organization, and for several servers.

* Two accounts, two regions, one bucket (owned by account A, with the bucket policy AWS
  documents for receiving log files from other accounts): every file lands under its own
  `AWSLogs/<account>/CloudTrail/<region>/` prefix, and `aws s3 ls --recursive` shows them all.
* An organization (declared in configuration): the management account's organization trail
  logs every member account under `AWSLogs/<o-id>/<account>/`, members see it as a shadow
  trail and cannot change it, and its digests validate per member with `otatrail validate-logs`.
* Two server processes, each with its own data directory and home region, deliver into one
  bucket of moto_server (an independent S3 implementation) at the same time: every
  acknowledged call is in exactly one file, and no file is overwritten.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import time
import uuid
from collections import Counter, defaultdict

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import (
    ACCOUNT_A,
    ACCOUNT_B,
    AccountSpec,
    Principal,
    aws_cli_command,
    clean_env,
    client_config,
    moto_endpoint,
    otatrail_binary,
    render_config,
)

ORG_ID = "o-aggregate01"
# An account outside the organization.
ACCOUNT_C = AccountSpec(id="777788889999", root_key="AKIAROOT0000EXAMPLE3", root_secret="rootsecret/EXAMPLE/3333333333333333333333")
ACCOUNTS = [ACCOUNT_A, ACCOUNT_B, ACCOUNT_C]
R1, R2 = "us-east-1", "eu-west-1"
A, B = ACCOUNT_A.id, ACCOUNT_B.id


def config(region: str = R1, extra: str = "") -> str:
    org = f'\n[[organizations]]\nid = "{ORG_ID}"\nmanagement_account = "{A}"\nmembers = ["{B}"]\n'
    return "delivery_interval_seconds = 1\ndigest_interval_seconds = 60\n" + extra + render_config(ACCOUNTS, region) + org


def client(srv, service: str, account: AccountSpec = ACCOUNT_A, region: str = R1):
    endpoint = srv.s3_endpoint if service == "s3" else srv.endpoint
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint,
        aws_access_key_id=account.root_key, aws_secret_access_key=account.root_secret, config=client_config(),
    )


def expect_error(fn, code: str, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    assert e.value.response["Error"]["Code"] == code, e.value.response
    assert e.value.response["Error"].get("Message"), e.value.response


def receiving_policy(bucket: str, prefixes: list[str]) -> str:
    """AWS's documented policy for a bucket that receives log files from several accounts or
    an organization."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AWSCloudTrailAclCheck", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "s3:GetBucketAcl", "Resource": f"arn:aws:s3:::{bucket}"},
            {"Sid": "AWSCloudTrailWrite", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "s3:PutObject", "Resource": [f"arn:aws:s3:::{bucket}/{p}*" for p in prefixes],
             "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}},
        ],
    })


def log_records(get_object, keys: list[str]) -> dict[str, list[dict]]:
    """Records of every log file, by key."""
    return {k: json.loads(gzip.decompress(get_object(k)))["Records"] for k in keys if "/CloudTrail/" in k}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def test_accounts_regions_and_an_organization_share_one_bucket(server_factory, tmp_path):
    srv = server_factory("configured", name="aggregate", start=False, accounts=ACCOUNTS)
    srv.config_path.write_text(config())
    srv.start()
    bucket = f"central-{uuid.uuid4().hex[:10]}"
    s3a = client(srv, "s3")
    s3a.create_bucket(Bucket=bucket)
    s3a.put_bucket_policy(Bucket=bucket, Policy=receiving_policy(bucket, [f"AWSLogs/{A}/", f"AWSLogs/{B}/", f"org/AWSLogs/{ORG_ID}/"]))

    # Per-account trails of both accounts, multi-region, into A's bucket.
    ct_a, ct_b, ct_c = client(srv, "cloudtrail"), client(srv, "cloudtrail", ACCOUNT_B), client(srv, "cloudtrail", ACCOUNT_C)
    for c, name in ((ct_a, "acct-a"), (ct_b, "acct-b")):
        arn = c.create_trail(Name=name, S3BucketName=bucket, IsMultiRegionTrail=True)["TrailARN"]
        c.start_logging(Name=arn)
    # Account C is not allowed by the policy.
    expect_error(ct_c.create_trail, "InsufficientS3BucketPolicyException", Name="acct-c", S3BucketName=bucket)

    # Organization trails: only the management account makes them.
    expect_error(ct_b.create_trail, "NotOrganizationMasterAccountException", Name="org-b", S3BucketName=bucket, IsOrganizationTrail=True)
    expect_error(ct_c.create_trail, "OrganizationsNotInUseException", Name="org-c", S3BucketName=bucket, IsOrganizationTrail=True)
    org = ct_a.create_trail(Name="org-trail", S3BucketName=bucket, S3KeyPrefix="org", IsOrganizationTrail=True,
                            IsMultiRegionTrail=True, EnableLogFileValidation=True)
    assert org["IsOrganizationTrail"] is True, org
    org_arn = org["TrailARN"]
    ct_a.start_logging(Name=org_arn)
    started = time.time() - 5

    # Members see the organization trail as a shadow, and cannot change it.
    b_view = {t["Name"]: t for t in ct_b.describe_trails()["trailList"]}
    assert b_view["org-trail"]["IsOrganizationTrail"] is True and b_view["org-trail"]["TrailARN"] == org_arn, b_view
    assert "org-trail" not in {t["Name"] for t in ct_c.describe_trails()["trailList"]}
    assert ct_b.get_trail(Name=org_arn)["Trail"]["TrailARN"] == org_arn
    assert ct_b.get_trail_status(Name=org_arn)["IsLogging"] is True
    for op, kw in ((ct_b.update_trail, {"Name": org_arn, "IncludeGlobalServiceEvents": False}),
                   (ct_b.stop_logging, {"Name": org_arn}), (ct_b.delete_trail, {"Name": org_arn})):
        expect_error(op, "NotOrganizationMasterAccountException", **kw)
    expect_error(ct_c.get_trail, "TrailNotFoundException", Name=org_arn)

    # Calls of both accounts in both regions.
    want: dict[tuple[str, str], set[str]] = defaultdict(set)
    for account in (ACCOUNT_A, ACCOUNT_B):
        for region in (R1, R2):
            iot = client(srv, "iot", account, region)
            for _ in range(2):
                rid = iot.list_streams()["ResponseMetadata"]["RequestId"]
                want[(account.id, region)].add(rid)

    keys_of = lambda: [o["Key"] for p in s3a.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]

    def delivered():
        # Each call reaches two trails (its account's and the organization's), delivered
        # independently: wait for both.
        recs = log_records(lambda k: s3a.get_object(Bucket=bucket, Key=k)["Body"].read(), keys_of())
        seen = Counter(r["requestID"] for rs in recs.values() for r in rs)
        return recs if all(seen[rid] >= 2 for rids in want.values() for rid in rids) else None

    recs = wait_for(delivered, 60, "every call in a log file")
    by_rid = defaultdict(list)
    for key, rs in recs.items():
        for r in rs:
            by_rid[r["requestID"]].append(key)
    for (account, region), rids in want.items():
        for rid in rids:
            keys = by_rid[rid]
            own = [k for k in keys if k.startswith(f"AWSLogs/{account}/CloudTrail/{region}/")]
            org_keys = [k for k in keys if k.startswith(f"org/AWSLogs/{ORG_ID}/{account}/CloudTrail/{region}/")]
            # Once in the account's own trail, once in the organization trail; nowhere else.
            assert len(own) == 1 and len(org_keys) == 1 and len(keys) == 2, (account, region, keys)
            assert own[0].split("/")[-1].startswith(f"{account}_CloudTrail_{region}_")
            assert org_keys[0].split("/")[-1].startswith(f"{account}_CloudTrail_{region}_")
    for key, rs in recs.items():
        parts = key.split("/")
        account = parts[3] if key.startswith("org/") else parts[1]
        assert {r["recipientAccountId"] for r in rs} == {account}, key

    # The aws CLI lists every file.
    env = clean_env({"AWS_ACCESS_KEY_ID": ACCOUNT_A.root_key, "AWS_SECRET_ACCESS_KEY": ACCOUNT_A.root_secret,
                     "AWS_DEFAULT_REGION": R1, "AWS_CONFIG_FILE": str(tmp_path / "none"),
                     "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}, home=tmp_path)
    ls = subprocess.run(aws_cli_command() + ["s3", "ls", "--recursive", f"s3://{bucket}", "--endpoint-url", srv.s3_endpoint],
                        env=env, capture_output=True, text=True, timeout=120)
    assert ls.returncode == 0, ls.stderr
    listed = {line.split()[-1] for line in ls.stdout.splitlines() if line.strip()}
    assert set(recs) <= listed, set(recs) - listed

    # The organization trail's digests, per member account, validate.
    wait_for(lambda: len([k for k in keys_of() if k.startswith(f"org/AWSLogs/{ORG_ID}/{B}/CloudTrail-Digest/{R1}/")]) >= 1, 100,
             "a digest of the member account")
    wait_for(lambda: len([k for k in keys_of() if k.startswith(f"org/AWSLogs/{ORG_ID}/{A}/CloudTrail-Digest/{R1}/")]) >= 1, 30,
             "a digest of the management account")
    for account in (A, B):
        cmd = [str(otatrail_binary()), "validate-logs", "--data-dir", str(srv.data_dir), "--config", str(srv.config_path),
               "--trail-arn", org_arn, "--start-time", str(int(started)), "--account-id", account, "--verbose"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"s3://{bucket}/org/AWSLogs/{ORG_ID}/{account}/CloudTrail-Digest/{R1}/" in out.stdout, out.stdout
        assert "0 log files not listed in any digest" in out.stdout, out.stdout


def test_two_servers_deliver_into_one_external_bucket(server_factory):
    endpoint = moto_endpoint()
    bucket = f"shared-{uuid.uuid4().hex[:10]}"
    moto = boto3.session.Session().client("s3", region_name=R1, endpoint_url=endpoint,
                                          aws_access_key_id="moto", aws_secret_access_key="moto")
    moto.create_bucket(Bucket=bucket)
    external = (f'[[external_buckets]]\nname = "{bucket}"\nendpoint = "{endpoint}"\n'
                'access_key_id = "moto"\nsecret_access_key = "moto"\n\n')
    servers = []
    for region in (R1, R2):
        srv = server_factory("configured", name=f"shared-{region}", start=False, accounts=ACCOUNTS)
        srv.config_path.write_text(external_first(config(region), external))
        srv.start()
        ct = client(srv, "cloudtrail", region=region)
        arn = ct.create_trail(Name="shared", S3BucketName=bucket, EnableLogFileValidation=True)["TrailARN"]
        ct.start_logging(Name=arn)
        servers.append((srv, region, arn))

    # Both servers busy at once for a while; each acknowledged call's request ID is kept.
    acked: dict[str, str] = {}
    deadline = time.monotonic() + 120  # two minutes of both servers writing
    clients = [(client(srv, "iot", region=region), region) for srv, region, _ in servers]
    while time.monotonic() < deadline:
        for iot, region in clients:
            acked[iot.list_streams()["ResponseMetadata"]["RequestId"]] = region
        time.sleep(0.1)

    def keys():
        return [o["Key"] for p in moto.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]

    def all_delivered():
        recs = log_records(lambda k: moto.get_object(Bucket=bucket, Key=k)["Body"].read(), keys())
        seen = Counter(r["requestID"] for rs in recs.values() for r in rs)
        return (recs, seen) if all(seen[rid] for rid in acked) else None

    recs, seen = wait_for(all_delivered, 60, "every acknowledged call in the shared bucket")
    assert all(seen[rid] == 1 for rid in acked), [rid for rid in acked if seen[rid] != 1][:5]
    for key, rs in recs.items():
        region = key.split("/")[3]
        assert key.startswith(f"AWSLogs/{A}/CloudTrail/{region}/"), key
        assert {r["awsRegion"] for r in rs} == {region}, key
    assert {k.split("/")[3] for k in recs} == {R1, R2}
    # Every file is there once and unchanged: what each server's digests list.
    for srv, region, arn in servers:
        cmd = [str(otatrail_binary()), "validate-logs", "--data-dir", str(srv.data_dir), "--config", str(srv.config_path),
               "--trail-arn", arn, "--start-time", str(int(time.time()) - 600), "--verbose"]
        wait_for(lambda: any(f"/CloudTrail-Digest/{region}/" in k for k in keys()), 60, f"a digest of {region}")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "0 log files not listed in any digest" in out.stdout, out.stdout


def external_first(cfg: str, external: str) -> str:
    """TOML tables must follow the top-level keys: the external bucket goes before the first table."""
    head, sep, tail = cfg.partition("[[accounts]]")
    return head + external + sep + tail
