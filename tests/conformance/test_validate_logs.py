"""`otatrail validate-logs` against the real `aws cloudtrail validate-logs` (aws CLI v1).

One server (delivery every second, a digest every 60 s, a new signing key every 60 s) records
IAM calls made steadily, is restarted once in the middle, and writes a chain of at least three
digests signed with at least two keys. On that chain:

- both tools report every digest and log file valid (ours read through --data-dir and through
  --endpoint-url/--s3-endpoint-url with credentials in the environment), with the same counts;
- then one change at a time, each undone before the next (original bytes and metadata put
  back): an edited log file, a deleted log file, a deleted middle digest, an edited digest, a
  digest re-signed with a key the server never had, and an injected log file. The AWS tool
  cannot see the injected file (asserted: it documents the gap); ours must.

The server keeps logging throughout (each validation run's own CloudTrail calls are recorded
too), so new digests keep arriving: the targets are always older digests of the first chain,
and the clean comparison is repeated when a digest lands between the runs.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import random
import re
import string
import subprocess
import time
from dataclasses import dataclass, field

import pytest
import rsa

import harness
from harness import (
    ACCOUNT_A,
    CONFIGURED_ACCOUNTS,
    REGION,
    aws_cli_command,
    clean_env,
    make_client,
    render_config,
    s3_client,
    unique,
)

CONFIG = (
    "delivery_interval_seconds = 1\n"
    "digest_interval_seconds = 60\n"
    "signing_key_rotation_seconds = 60\n"
) + render_config(CONFIGURED_ACCOUNTS)
BUCKET = "validate-logs-audit"
TRAIL = "validate-trail"
SETUP_TIMEOUT_S = 330
TOOL_TIMEOUT_S = 120

LINE_RE = re.compile(r"^(Digest file|Log file|Digest chain)\t(s3://\S+)\t(.*)$", re.M)


# --------------------------------------------------------------------------------------
# Running the two tools
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    tool: str
    returncode: int
    stdout: str
    stderr: str
    # (kind, s3 url, status) of every Digest file / Log file / Digest chain line. The AWS tool
    # prints INVALID lines on stderr; ours prints everything on stdout (its contract).
    lines: list[tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.tool} exited {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"

    def status_of(self, kind: str, key: str) -> list[str]:
        url = f"s3://{BUCKET}/{key}"
        return [s for (k, u, s) in self.lines if k == kind and u == url]

    def valid(self, kind: str) -> set[str]:
        return {u for (k, u, s) in self.lines if k == kind and s == "valid"}

    def invalid(self) -> list[tuple[str, str, str]]:
        return [ln for ln in self.lines if ln[2] != "valid"]

    def ratio(self, what: str) -> tuple[int, int]:
        m = re.search(rf"^(\d+)/(\d+) {what} files valid", self.stdout, re.M)
        assert m, f"no '{what} files valid' count\n{self}"
        return int(m.group(1)), int(m.group(2))

    def count(self, what: str) -> int:
        m = re.search(rf"^(\d+) {what}$", self.stdout, re.M)
        assert m, f"no '{what}' count\n{self}"
        return int(m.group(1))


def aws_validate(srv, arn: str, start: str, home) -> Run:
    """`aws cloudtrail validate-logs --verbose`, as test_digests.validate runs it."""
    p = srv.root(ACCOUNT_A)
    env = clean_env(
        {
            "AWS_ACCESS_KEY_ID": p.access_key_id,
            "AWS_SECRET_ACCESS_KEY": p.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            # validate-logs makes its S3 client without --endpoint-url: point it at the S3 port.
            "AWS_ENDPOINT_URL_S3": srv.s3_endpoint,
            "AWS_CONFIG_FILE": str(home / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        home=home,
    )
    cmd = aws_cli_command() + [
        "cloudtrail", "validate-logs", "--endpoint-url", srv.endpoint,
        "--trail-arn", arn, "--start-time", start, "--verbose",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    return Run("aws cloudtrail validate-logs", proc.returncode, proc.stdout, proc.stderr,
               LINE_RE.findall(proc.stdout + "\n" + proc.stderr))


def data_dir_args(srv) -> list[str]:
    """--data-dir (plus --config) for reading the server's store directly. In the external-store
    mode the server gets its store through flags, so a config file carries them instead."""
    config = srv.config_path
    flags = getattr(srv, "_external_flags", None)
    if harness.EXTERNAL_S3 and flags:
        opts = dict(zip(flags[0::2], flags[1::2]))
        extra = {
            "s3_endpoint": opts["--s3-endpoint"],
            "s3_bucket": opts["--s3-bucket"],
            "s3_access_key_id": opts["--s3-access-key-id"],
            "s3_secret_access_key": opts["--s3-secret-access-key"],
        }
        config = srv.workdir / "validate-external.toml"
        config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items()) + srv.config_path.read_text())
    return ["--data-dir", str(srv.data_dir), "--config", str(config)]


def ours_validate(srv, arn: str, start: str, home, mode: str) -> Run:
    """`otatrail validate-logs --verbose`, reading the data dir (`mode="data-dir"`) or talking
    to the running server (`mode="endpoint"`, credentials from the environment)."""
    p = srv.root(ACCOUNT_A)
    env = clean_env(
        {
            "AWS_CONFIG_FILE": str(home / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        home=home,
    )
    cmd = [str(srv.binary), "validate-logs", "--trail-arn", arn, "--start-time", start, "--verbose"]
    if mode == "data-dir":
        cmd += data_dir_args(srv)
    elif mode == "endpoint":
        cmd += ["--endpoint-url", srv.endpoint, "--s3-endpoint-url", srv.s3_endpoint]
        env.update(
            {
                "AWS_ACCESS_KEY_ID": p.access_key_id,
                "AWS_SECRET_ACCESS_KEY": p.secret_access_key,
                "AWS_DEFAULT_REGION": REGION,
            }
        )
    else:
        raise ValueError(mode)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    return Run(f"otatrail validate-logs ({mode})", proc.returncode, proc.stdout, proc.stderr, LINE_RE.findall(proc.stdout))


MODES = ("data-dir", "endpoint")


# --------------------------------------------------------------------------------------
# Bucket helpers
# --------------------------------------------------------------------------------------


def digest_keys(s3) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="AWSLogs/"):
        keys += [o["Key"] for o in page.get("Contents", []) if "/CloudTrail-Digest/" in o["Key"]]
    return sorted(keys)


def read_digest(s3, key: str) -> dict:
    return json.loads(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


@dataclass
class Saved:
    key: str
    body: bytes
    metadata: dict


def save(s3, key: str) -> Saved:
    obj = s3.get_object(Bucket=BUCKET, Key=key)
    return Saved(key, obj["Body"].read(), dict(obj.get("Metadata", {})))


def restore(s3, saved: Saved) -> None:
    s3.put_object(Bucket=BUCKET, Key=saved.key, Body=saved.body, Metadata=saved.metadata)
    back = s3.get_object(Bucket=BUCKET, Key=saved.key)
    assert back["Body"].read() == saved.body and dict(back.get("Metadata", {})) == saved.metadata, f"could not restore {saved.key}"


def s3_url(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


# --------------------------------------------------------------------------------------
# The server and its chain
# --------------------------------------------------------------------------------------


@dataclass
class Chain:
    srv: object
    s3: object
    arn: str
    start: str
    home: object
    digests: list[str]  # the first digests, oldest first (at least three)
    contents: dict[str, dict]  # their JSON


@pytest.fixture(scope="module")
def chain(server_factory, tmp_path_factory) -> Chain:
    home = tmp_path_factory.mktemp("validate-home")
    srv = server_factory("configured", name="validate_logs", start=False)
    srv.config_path.write_text(CONFIG)
    srv.start()
    s3 = s3_client(srv)
    s3.create_bucket(Bucket=BUCKET)
    ct = make_client("cloudtrail", srv)
    arn = ct.create_trail(Name=TRAIL, S3BucketName=BUCKET, EnableLogFileValidation=True)["TrailARN"]
    start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ct.start_logging(Name=arn)
    iam = make_client("iam", srv)

    contents: dict[str, dict] = {}
    restarted = False
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    last = "nothing yet"
    while time.monotonic() < deadline:
        iam.create_user(UserName=unique("vl-user"))
        keys = digest_keys(s3)
        for k in keys:
            if k not in contents:
                contents[k] = read_digest(s3, k)
        if keys and not restarted:
            # The chain must continue across a restart.
            srv.restart()
            iam = make_client("iam", srv)
            restarted = True
            continue
        fingerprints = {contents[k]["digestPublicKeyFingerprint"] for k in keys}
        logs = sum(len(contents[k]["logFiles"]) for k in keys)
        last = f"{len(keys)} digests, {len(fingerprints)} signing keys, {logs} log files listed"
        if restarted and len(keys) >= 3 and len(fingerprints) >= 2 and logs >= 3 and contents[keys[1]]["logFiles"]:
            return Chain(srv, s3, arn, start, home, keys, {k: contents[k] for k in keys})
        time.sleep(1)
    pytest.fail(f"no chain of 3 digests with 2 signing keys within {SETUP_TIMEOUT_S}s ({last})")


def digest_urls(run: Run) -> set[str]:
    return run.valid("Digest file")


def assert_all_valid(run: Run, ours: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    assert run.returncode == 0, str(run)
    assert run.stdout.startswith("Validating log files for trail "), str(run)
    assert not run.invalid(), f"INVALID lines: {run.invalid()}\n{run}"
    digests, logs = run.ratio("digest"), run.ratio("log")
    assert digests[0] == digests[1] >= 3, str(run)
    assert logs[0] == logs[1] >= 3, str(run)
    assert len(run.valid("Digest file")) == digests[0], str(run)
    assert len(run.valid("Log file")) == logs[0], str(run)
    if ours:
        assert run.count("log files not listed in any digest") == 0, str(run)
        assert run.count("digest chain breaks") == 0, str(run)
        assert "Results requested for " in run.stdout and "Results found for " in run.stdout, str(run)
    return digests, logs


def assert_invalid(run: Run, kind: str, key: str, reason: str) -> None:
    """Exit 1 and a `<kind>\\ts3://bucket/key\\tINVALID: <reason>...` line."""
    assert run.returncode == 1, str(run)
    statuses = run.status_of(kind, key)
    assert any(s.startswith(f"INVALID: {reason}") for s in statuses), (
        f"expected {kind} {s3_url(key)} INVALID: {reason}; got {statuses}\n{run}"
    )


def run_all(c: Chain) -> tuple[Run, Run, Run]:
    return (
        aws_validate(c.srv, c.arn, c.start, c.home),
        ours_validate(c.srv, c.arn, c.start, c.home, "data-dir"),
        ours_validate(c.srv, c.arn, c.start, c.home, "endpoint"),
    )


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


def test_chain_spans_a_restart_and_a_key_rotation(chain):
    fps = [chain.contents[k]["digestPublicKeyFingerprint"] for k in chain.digests]
    assert len(set(fps)) >= 2, fps
    first = chain.contents[chain.digests[0]]
    assert first["previousDigestSignature"] is None
    for older, newer in zip(chain.digests, chain.digests[1:]):
        assert chain.contents[newer]["previousDigestS3Object"] == older
        assert chain.contents[newer]["digestStartTime"] == chain.contents[older]["digestEndTime"]


def test_clean_chain_is_valid_for_both_tools(chain):
    for attempt in range(4):
        before = digest_keys(chain.s3)
        aws, ours_dir, ours_ep = run_all(chain)
        after = digest_keys(chain.s3)
        if before == after:
            break
        # A digest was written between the runs: their counts may differ. Again.
    else:
        pytest.fail("a new digest landed during every comparison run")
    counts = assert_all_valid(aws, ours=False)
    expected_digests = {s3_url(k) for k in after}
    assert digest_urls(aws) == expected_digests, str(aws)
    for run in (ours_dir, ours_ep):
        assert assert_all_valid(run, ours=True) == counts, f"counts differ from the AWS tool's {counts}\n{run}\n{aws}"
        assert run.valid("Digest file") == aws.valid("Digest file"), f"{run}\n{aws}"
        assert run.valid("Log file") == aws.valid("Log file"), f"{run}\n{aws}"


def test_changed_log_file(chain):
    victim = chain.contents[chain.digests[1]]["logFiles"][0]["s3Object"]
    saved = save(chain.s3, victim)
    data = gzip.decompress(saved.body)
    marker = b'"eventID":"'
    i = data.index(marker) + len(marker)
    forged = data[:i] + (b"0" if data[i:i + 1] != b"0" else b"1") + data[i + 1:]
    assert forged != data and len(forged) == len(data)
    chain.s3.put_object(Bucket=BUCKET, Key=victim, Body=gzip.compress(forged), Metadata=saved.metadata)
    try:
        aws = aws_validate(chain.srv, chain.arn, chain.start, chain.home)
        assert_invalid(aws, "Log file", victim, "hash value doesn't match")
        for mode in MODES:
            run = ours_validate(chain.srv, chain.arn, chain.start, chain.home, mode)
            assert_invalid(run, "Log file", victim, "hash value doesn't match")
            valid, total = run.ratio("log")
            assert total - valid == 1, str(run)
    finally:
        restore(chain.s3, saved)


def test_deleted_log_file(chain):
    victim = chain.contents[chain.digests[1]]["logFiles"][-1]["s3Object"]
    saved = save(chain.s3, victim)
    chain.s3.delete_object(Bucket=BUCKET, Key=victim)
    try:
        aws = aws_validate(chain.srv, chain.arn, chain.start, chain.home)
        assert_invalid(aws, "Log file", victim, "not found")
        for mode in MODES:
            run = ours_validate(chain.srv, chain.arn, chain.start, chain.home, mode)
            assert_invalid(run, "Log file", victim, "not found")
    finally:
        restore(chain.s3, saved)


def test_deleted_middle_digest(chain):
    victim = chain.digests[1]  # neither the oldest nor the newest
    saved = save(chain.s3, victim)
    chain.s3.delete_object(Bucket=BUCKET, Key=victim)
    try:
        aws = aws_validate(chain.srv, chain.arn, chain.start, chain.home)
        assert_invalid(aws, "Digest file", victim, "not found")
        # The AWS tool goes on with the older digests.
        assert s3_url(chain.digests[0]) in aws.valid("Digest file"), str(aws)
        for mode in MODES:
            run = ours_validate(chain.srv, chain.arn, chain.start, chain.home, mode)
            assert_invalid(run, "Digest file", victim, "")
            assert s3_url(chain.digests[0]) in run.valid("Digest file"), str(run)
    finally:
        restore(chain.s3, saved)


def test_edited_digest(chain):
    victim = chain.digests[1]
    saved = save(chain.s3, victim)
    data = gzip.decompress(saved.body)
    old_hash = chain.contents[victim]["logFiles"][0]["hashValue"]
    new_hash = ("0" if old_hash[0] != "0" else "1") + old_hash[1:]
    forged = data.replace(f'"{old_hash}"'.encode(), f'"{new_hash}"'.encode(), 1)
    assert forged != data and json.loads(forged)["logFiles"][0]["hashValue"] == new_hash
    # Same signature metadata: it no longer matches the content.
    chain.s3.put_object(Bucket=BUCKET, Key=victim, Body=gzip.compress(forged), Metadata=saved.metadata)
    try:
        aws = aws_validate(chain.srv, chain.arn, chain.start, chain.home)
        assert_invalid(aws, "Digest file", victim, "signature verification failed")
        for mode in MODES:
            run = ours_validate(chain.srv, chain.arn, chain.start, chain.home, mode)
            assert_invalid(run, "Digest file", victim, "signature verification failed")
    finally:
        restore(chain.s3, saved)


def string_to_sign(doc: dict, inflated: bytes) -> bytes:
    """cloudtrail.md §3.3."""
    prev = doc["previousDigestSignature"]
    return (
        f"{doc['digestEndTime']}\n{doc['digestS3Bucket']}/{doc['digestS3Object']}\n"
        f"{hashlib.sha256(inflated).hexdigest()}\n{'null' if prev is None else prev}"
    ).encode("utf-8")


def test_digest_signed_with_an_unknown_key(chain):
    victim = chain.digests[1]
    saved = save(chain.s3, victim)
    pub, priv = rsa.newkeys(2048)
    fingerprint = hashlib.md5(pub.save_pkcs1("DER")).hexdigest()
    doc = json.loads(gzip.decompress(saved.body))
    assert fingerprint != doc["digestPublicKeyFingerprint"]
    doc["digestPublicKeyFingerprint"] = fingerprint
    inflated = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    signature = rsa.sign(string_to_sign(doc, inflated), priv, "SHA-256").hex()
    assert len(signature) == 512
    rsa.verify(string_to_sign(doc, inflated), bytes.fromhex(signature), pub)  # a well-made forgery
    chain.s3.put_object(
        Bucket=BUCKET, Key=victim, Body=gzip.compress(inflated),
        Metadata={**saved.metadata, "signature": signature, "signature-algorithm": "SHA256withRSA"},
    )
    try:
        aws = aws_validate(chain.srv, chain.arn, chain.start, chain.home)
        assert_invalid(aws, "Digest file", victim, f"public key not found in region {REGION}")
        for mode in MODES:
            run = ours_validate(chain.srv, chain.arn, chain.start, chain.home, mode)
            assert_invalid(run, "Digest file", victim, f"public key not found in region {REGION}")
    finally:
        restore(chain.s3, saved)


def test_injected_log_file(chain):
    # Named for a minute inside the second digest's period: after --start-time, and at least a
    # minute before the end of the third digest, so a digest should have listed it.
    end = dt.datetime.strptime(chain.contents[chain.digests[1]]["digestEndTime"], "%Y-%m-%dT%H:%M:%SZ")
    acct = ACCOUNT_A.id
    suffix = "".join(random.choice(string.ascii_letters + string.digits) for _ in range(16))
    key = (
        f"AWSLogs/{acct}/CloudTrail/{REGION}/{end:%Y/%m/%d}/"
        f"{acct}_CloudTrail_{REGION}_{end:%Y%m%dT%H%M}Z_{suffix}.json.gz"
    )
    # A well-formed file: a real record with a new eventID.
    real = chain.contents[chain.digests[1]]["logFiles"][0]["s3Object"]
    record = json.loads(gzip.decompress(chain.s3.get_object(Bucket=BUCKET, Key=real)["Body"].read()))["Records"][0]
    record["eventID"] = "00000000-1111-2222-3333-444444444444"
    chain.s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(json.dumps({"Records": [record]}).encode()))
    try:
        aws = aws_validate(chain.srv, chain.arn, chain.start, chain.home)
        # The AWS tool only reads the files the digests list: it cannot see this one.
        assert aws.returncode == 0, str(aws)
        assert not aws.status_of("Log file", key), str(aws)
        for mode in MODES:
            run = ours_validate(chain.srv, chain.arn, chain.start, chain.home, mode)
            assert_invalid(run, "Log file", key, "not listed in any digest")
            assert run.count("log files not listed in any digest") == 1, str(run)
    finally:
        chain.s3.delete_object(Bucket=BUCKET, Key=key)


def test_restored_bucket_is_valid_again(chain):
    aws, ours_dir, ours_ep = run_all(chain)
    assert_all_valid(aws, ours=False)
    assert_all_valid(ours_dir, ours=True)
    assert_all_valid(ours_ep, ours=True)
