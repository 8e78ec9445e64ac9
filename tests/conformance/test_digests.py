"""Digest files checked by the real `aws cloudtrail validate-logs` (aws CLI v1).

One server with a 1-second delivery interval and the shortest digest interval (60 s) writes a
chain of two digests (the second spanning a server restart), which the CLI must report valid;
then a changed log file and a deleted log file must be reported invalid.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import subprocess
import time

import pytest

from harness import (
    ACCOUNT_A,
    CONFIGURED_ACCOUNTS,
    REGION,
    aws_cli_command,
    clean_env,
    make_client,
    render_config,
    s3_client,
)

CONFIG = "delivery_interval_seconds = 1\ndigest_interval_seconds = 60\n" + render_config(CONFIGURED_ACCOUNTS)
BUCKET = "digest-audit-logs"


def validate(srv, arn: str, start: str, tmp_path) -> subprocess.CompletedProcess:
    p = srv.root(ACCOUNT_A)
    env = clean_env(
        {
            "AWS_ACCESS_KEY_ID": p.access_key_id,
            "AWS_SECRET_ACCESS_KEY": p.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            # validate-logs makes its S3 client without --endpoint-url: point it at the S3 port.
            "AWS_ENDPOINT_URL_S3": srv.s3_endpoint,
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        },
        home=tmp_path,
    )
    cmd = aws_cli_command() + [
        "cloudtrail", "validate-logs", "--endpoint-url", srv.endpoint,
        "--trail-arn", arn, "--start-time", start, "--verbose",
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def wait_for_digests(s3, n: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []) if "/CloudTrail-Digest/" in o["Key"]]
        if len(keys) >= n:
            return sorted(keys)
        time.sleep(1)
    pytest.fail(f"{n} digest files were not written within {timeout}s")


def test_validate_logs_accepts_the_chain_and_catches_tampering(server_factory, tmp_path):
    srv = server_factory("configured", name="digests", start=False)
    srv.config_path.write_text(CONFIG)
    srv.start()
    s3 = s3_client(srv)
    s3.create_bucket(Bucket=BUCKET)
    ct = make_client("cloudtrail", srv)
    arn = ct.create_trail(Name="digest-trail", S3BucketName=BUCKET, EnableLogFileValidation=True)["TrailARN"]
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ct.start_logging(Name=arn)
    iam = make_client("iam", srv)
    for i in range(3):
        iam.create_user(UserName=f"digest-user-{i}")
    first = wait_for_digests(s3, 1, 90)
    # The chain continues across a restart.
    srv.restart()
    ct = make_client("cloudtrail", srv)
    make_client("iam", srv).create_user(UserName="after-restart")
    digests = wait_for_digests(s3, 2, 90)
    assert digests[0] == first[0]

    status = ct.get_trail_status(Name=arn)
    assert "LatestDigestDeliveryTime" in status and "LatestDigestDeliveryError" not in status

    ok = validate(srv, arn, start, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2/2 digest files valid" in ok.stdout, ok.stdout
    # Every log file the digests list is valid (files delivered after the last digest's end
    # belong to the next digest).
    m = re.search(r"(\d+)/(\d+) log files valid", ok.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 2, ok.stdout
    listed = re.findall(rf"Log file\ts3://{BUCKET}/(\S+)\tvalid", ok.stdout)
    assert len(listed) == int(m.group(1)), ok.stdout

    # A changed log file: the owner overwrites it through S3 with a well-formed file whose
    # records were edited; the digest's hash catches it.
    victim = listed[0]
    original = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=victim)["Body"].read())
    forged = original.replace(b'"readOnly":false', b'"readOnly":true ', 1).replace(b'"readOnly":true,', b'"readOnly":false', 1)
    assert forged != original and len(forged) == len(original)
    s3.put_object(Bucket=BUCKET, Key=victim, Body=gzip.compress(forged))
    bad = validate(srv, arn, start, tmp_path)
    out = bad.stdout + bad.stderr
    assert bad.returncode == 1, out
    assert re.search(r"1/\d+ log files INVALID", out), out
    assert victim in out and "hash value doesn't match" in out, out

    # A deleted log file is reported missing.
    s3.delete_object(Bucket=BUCKET, Key=victim)
    gone = validate(srv, arn, start, tmp_path)
    out = gone.stdout + gone.stderr
    assert gone.returncode == 1, out
    assert victim in out and "not found" in out, out
