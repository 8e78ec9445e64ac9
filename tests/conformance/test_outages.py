"""Failure modes of the audit trail: the trail's bucket unreachable, and the data disk full.

* **Bucket unreachable.** A trail delivers into an external bucket of moto_server through a
  small TCP proxy (a thread of this test). Calls go on all the time; the proxy is cut for
  ~24 s (live connections reset, new ones refused) and restored. Every call must still
  succeed (its record is durable in the database), GetTrailStatus must show an S3-style
  `LatestDeliveryError` during the outage and clear it (and advance `LatestDeliveryTime`)
  after, every acknowledged call must be in exactly one delivered log file, no eventID twice,
  and once a digest covers the period `otatrail validate-logs` must exit 0. Meanwhile a second
  account's trails meet a declared external bucket that does not exist yet (`NoSuchBucket`)
  and an embedded bucket whose policy is removed for a while (`AccessDenied`), and catch up.
* **Disk full.** The server's data directory is a 64 MiB tmpfs; a filler file takes all of its
  space while calls go on. Calls must then fail quickly with a well-formed 5xx AWS error (not
  hang, not crash the server), the server must say in its log what is wrong, and once the
  filler is removed the server must work again without a restart: every acknowledged call
  delivered exactly once, every log file a valid gzip of `{"Records":[...]}`, the database
  intact across a restart, and `otatrail validate-logs --data-dir` exit 0.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import select
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import harness
from harness import ACCOUNT_A, ACCOUNT_B, CONFIGURED_ACCOUNTS, REGION, moto_endpoint, render_config

A, B = ACCOUNT_A.id, ACCOUNT_B.id
DIGEST_INTERVAL_S = 60


# --------------------------------------------------------------------------------------
# A TCP proxy that can be cut
# --------------------------------------------------------------------------------------


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target. `cut()` resets every live connection and refuses
    new ones (the port stays bound but stops listening: a SYN gets a RST); `restore()` listens
    again on the same port."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.stopped = threading.Event()
        self.accepted = 0
        self.sock, self.port = self._bound()
        self.sock.listen(128)
        self.listening = True
        self.thread = threading.Thread(target=self._accept_loop, name="outage-proxy", daemon=True)
        self.thread.start()

    @staticmethod
    def _bound() -> tuple[socket.socket, int]:
        # Bound to an explicit port (not 0), so Linux keeps the port when the listener is shut
        # down (see `cut`).
        for _ in range(20):
            port = harness.free_port()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return s, port
            except OSError:
                s.close()
        raise AssertionError("no free port for the proxy")

    def _accept_loop(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                sock, listening = self.sock, self.listening
            if not listening:
                time.sleep(0.05)
                continue
            try:
                r, _, _ = select.select([sock], [], [], 0.1)
                if not r:
                    continue
                client, _ = sock.accept()
            except OSError:
                continue  # the listener was swapped under us by cut()
            with self.lock:
                if not self.listening:
                    _reset(client)
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _reset(client)
                    continue
                upstream.settimeout(None)
                self.conns |= {client, upstream}
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                for s in (src, dst):
                    if s in self.conns:
                        self.conns.discard(s)
                        _reset(s)

    def cut(self) -> None:
        with self.lock:
            self.listening = False
            # On Linux, shutting a listener down stops it listening but keeps its port bound:
            # connection attempts are refused, and no one else can take the port meanwhile.
            self.sock.shutdown(socket.SHUT_RDWR)
            for s in list(self.conns):
                _reset(s)
            self.conns.clear()

    def restore(self) -> None:
        with self.lock:
            self.sock.listen(128)
            self.listening = True

    def close(self) -> None:
        self.stopped.set()
        with self.lock:
            self.sock.close()
            for s in list(self.conns):
                _reset(s)
            self.conns.clear()


def _reset(s: socket.socket) -> None:
    """Closes with a RST (SO_LINGER 0), as a dead peer or a middlebox would."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# --------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------


def clients(srv, read_timeout: float = 20, account=None):
    cfg = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=read_timeout)
    p = srv.root(account)
    mk = lambda svc: boto3.session.Session().client(
        svc, region_name=REGION, endpoint_url=srv.endpoint, aws_access_key_id=p.access_key_id,
        aws_secret_access_key=p.secret_access_key, config=cfg,
    )
    return mk("iot"), mk("iam"), mk("sts"), mk("cloudtrail")


PACE_S = 0.02  # between two calls: a steady stream without hogging the shared CPUs


class Driver(threading.Thread):
    """Sends a steady mix of calls (IAM CreateUser and DeleteUser in the query protocol, IoT
    ListStreams in rest-json, STS GetCallerIdentity) until stopped; keeps the request ID of
    every 2xx and the details of every failure."""

    def __init__(self, srv, name: str):
        super().__init__(name=f"outage-driver-{name}", daemon=True)
        self.iot, self.iam, self.sts, _ = clients(srv)
        self.stop_event = threading.Event()
        self.acked: list[tuple[float, str, str]] = []  # (monotonic time, operation, request id)
        self.failures: list[dict] = []
        self.tag = uuid.uuid4().hex[:8]
        self.n = 0
        self.users: list[str] = []
        self.error: BaseException | None = None
        self.slowest = 0.0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
                time.sleep(PACE_S)
        except BaseException as e:  # reported by the test
            self.error = e

    def step(self) -> None:
        self.n += 1
        k = self.n % 4
        if k == 0:
            name = f"outage-{self.tag}-{self.n:05d}"
            if self.call("CreateUser", self.iam.create_user, UserName=name):
                self.users.append(name)
        elif k == 1 and len(self.users) > 3:
            name = self.users.pop(0)
            if not self.call("DeleteUser", self.iam.delete_user, UserName=name):
                self.users.insert(0, name)
        elif k == 2:
            self.call("ListStreams", self.iot.list_streams)
        else:
            self.call("GetCallerIdentity", self.sts.get_caller_identity)

    def call(self, op: str, fn, **kw) -> bool:
        t0 = time.monotonic()
        try:
            resp = fn(**kw)
        except ClientError as e:
            r = e.response
            self.failures.append({
                "t": t0, "op": op, "elapsed": time.monotonic() - t0,
                "status": r.get("ResponseMetadata", {}).get("HTTPStatusCode"),
                "code": r.get("Error", {}).get("Code"), "message": r.get("Error", {}).get("Message"),
                "request_id": r.get("ResponseMetadata", {}).get("RequestId"),
            })
            time.sleep(0.05)
            return False
        except Exception as e:  # connection errors, read timeouts: the server hangs or is gone
            self.failures.append({"t": t0, "op": op, "elapsed": time.monotonic() - t0, "status": None,
                                  "code": type(e).__name__, "message": str(e), "request_id": None})
            time.sleep(0.05)
            return False
        finally:
            self.slowest = max(self.slowest, time.monotonic() - t0)
        md = resp["ResponseMetadata"]
        assert 200 <= md["HTTPStatusCode"] < 300 and md.get("RequestId"), md
        self.acked.append((t0, op, md["RequestId"]))
        return True

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the driver thread did not stop (a call hangs?)"
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------------------
# Delivered files
# --------------------------------------------------------------------------------------


def gunzip_one_member(body: bytes, where: str) -> bytes:
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    raw = d.decompress(body) + d.flush()
    assert d.eof, f"{where}: truncated gzip stream"
    assert d.unused_data == b"", f"{where}: data after the first gzip member"
    return raw


class Delivered:
    """The trail's log files and digests in a bucket, read through `s3` (delivered objects
    never change, so each is read once)."""

    def __init__(self, s3, bucket: str, account: str = A):
        self.s3, self.bucket = s3, bucket
        self.logs: dict[str, list[dict]] = {}
        self.digests: dict[str, dict] = {}
        self.log_re = re.compile(
            rf"^AWSLogs/{account}/CloudTrail/{REGION}/\d{{4}}/\d\d/\d\d/{account}_CloudTrail_{REGION}_\d{{8}}T\d{{4}}Z_[A-Za-z0-9]{{16}}\.json\.gz$"
        )

    def refresh(self) -> "Delivered":
        keys = [o["Key"] for p in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="AWSLogs/")
                for o in p.get("Contents", [])]
        for key in keys:
            if key in self.logs or key in self.digests:
                continue
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            doc = json.loads(gunzip_one_member(body, key))
            if "/CloudTrail-Digest/" in key:
                self.digests[key] = doc
                continue
            assert self.log_re.match(key), f"unexpected object {key!r} in the log bucket"
            assert isinstance(doc, dict) and list(doc) == ["Records"], f"{key}: top level is {list(doc)!r}"
            assert isinstance(doc["Records"], list) and doc["Records"], f"{key}: no records"
            self.logs[key] = doc["Records"]
        return self

    def where(self) -> dict[str, list[str]]:
        out = defaultdict(list)
        for key, recs in self.logs.items():
            for r in recs:
                out[r.get("requestID")].append(key)
        return out

    def listed(self) -> set[str]:
        return {f["s3Object"] for d in self.digests.values() for f in d["logFiles"]}

    def wait_for(self, request_ids: set[str], timeout: float) -> set[str]:
        """Waits until every request ID is delivered; returns those still missing."""
        deadline = time.monotonic() + timeout
        while True:
            missing = request_ids - set(self.refresh().where())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.5)

    def wait_all_listed(self, deadline: float) -> set[str]:
        """Waits until a digest lists every delivered log file; returns the unlisted ones."""
        while True:
            unlisted = set(self.refresh().logs) - self.listed()
            if not unlisted or time.monotonic() > deadline:
                return unlisted
            time.sleep(1.0)

    def check_exactly_once(self, acked: list[tuple[float, str, str]]) -> None:
        where = self.where()
        not_once = {rid: where.get(rid, []) for _, _, rid in acked if len(where.get(rid, [])) != 1}
        assert not not_once, "acknowledged calls not delivered exactly once: " + "; ".join(
            f"{rid} in {keys}" for rid, keys in list(not_once.items())[:20])
        events = Counter(r["eventID"] for recs in self.logs.values() for r in recs)
        dups = {e: n for e, n in events.items() if n > 1}
        assert not dups, f"{len(dups)} eventIDs delivered more than once: {list(dups.items())[:20]}"
        rids = {r: ks for r, ks in where.items() if r is not None and len(ks) > 1}
        assert not rids, f"requestIDs with more than one delivered record: {list(rids.items())[:20]}"

    def check_chain(self) -> None:
        chain = sorted(self.digests, key=lambda k: self.digests[k]["digestEndTime"])
        assert chain, "no digest"
        for older, newer in zip(chain, chain[1:]):
            assert self.digests[newer]["previousDigestS3Object"] == older, f"{newer} does not follow {older}"
            assert self.digests[newer]["digestStartTime"] == self.digests[older]["digestEndTime"], (older, newer)


def validate_logs(srv, arn: str, start_time: str, home: Path) -> str:
    """`otatrail validate-logs --data-dir` (plus the config, which declares any external
    bucket); asserts exit 0 with every file valid and listed; returns the report."""
    cmd = [str(srv.binary), "validate-logs", "--data-dir", str(srv.data_dir), "--config", str(srv.config_path),
           "--trail-arn", arn, "--start-time", start_time, "--verbose"]
    env = harness.clean_env({"AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
                             "AWS_EC2_METADATA_DISABLED": "true"}, home=home)
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    report = f"validate-logs exited {run.returncode}\n--- stdout ---\n{run.stdout[-6000:]}\n--- stderr ---\n{run.stderr[-3000:]}"
    assert run.returncode == 0, report
    assert re.search(r"^0 log files not listed in any digest$", run.stdout, re.M), report
    m = re.search(r"^(\d+)/(\d+) log files valid", run.stdout, re.M)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 0, report
    m = re.search(r"^(\d+)/(\d+) digest files valid", run.stdout, re.M)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 0, report
    return run.stdout


def server_log_lines(srv, pattern: str, limit: int = 20) -> list[str]:
    rx = re.compile(pattern)
    out = [line for p in srv.log_files() for line in p.read_text(errors="replace").splitlines() if rx.search(line)]
    return out[:limit]


def utc_start() -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


def external_first(cfg: str, external: str) -> str:
    """TOML tables must follow the top-level keys: the external bucket goes before the first table."""
    head, sep, tail = cfg.partition("[[accounts]]")
    return head + external + sep + tail


# --------------------------------------------------------------------------------------
# 1. The trail's bucket unreachable
# --------------------------------------------------------------------------------------

OUTAGE_S = 24.0
# AWS reports S3 error codes in LatestDeliveryError (`NoSuchBucket`, `AccessDenied`, ...).
S3_ERROR_CODE = re.compile(r"^[A-Z][A-Za-z]+$")


def receiving_policy(bucket: str, account: str) -> str:
    """AWS's documented policy for a bucket that receives another account's log files."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AWSCloudTrailAclCheck", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "s3:GetBucketAcl", "Resource": f"arn:aws:s3:::{bucket}"},
            {"Sid": "AWSCloudTrailWrite", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/AWSLogs/{account}/*",
             "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}},
        ],
    })


def test_external_bucket_unreachable_for_a_while(server_factory, tmp_path):
    """Account A's trail delivers through the proxy, which is cut for OUTAGE_S. Meanwhile
    account B has two trails: one into a declared external bucket that moto has only from the
    restore on (`NoSuchBucket`), one into A's embedded bucket whose policy A removes for a
    while (`AccessDenied`)."""
    t_begin = time.monotonic()
    endpoint = moto_endpoint()
    moto_port = int(endpoint.rsplit(":", 1)[1])
    bucket, late = f"outage-{uuid.uuid4().hex[:10]}", f"outage-late-{uuid.uuid4().hex[:10]}"
    moto = boto3.session.Session().client("s3", region_name=REGION, endpoint_url=endpoint,
                                          aws_access_key_id="moto", aws_secret_access_key="moto")
    moto.create_bucket(Bucket=bucket)
    proxy = CuttableProxy(moto_port)
    external = "".join(
        f'[[external_buckets]]\nname = "{name}"\nendpoint = "{url}"\naccess_key_id = "moto"\nsecret_access_key = "moto"\n\n'
        for name, url in ((bucket, f"http://127.0.0.1:{proxy.port}"), (late, endpoint))
    )
    cfg = f"delivery_interval_seconds = 1\ndigest_interval_seconds = {DIGEST_INTERVAL_S}\n" + render_config(CONFIGURED_ACCOUNTS)
    srv = server_factory("configured", name="outage_bucket", start=False)
    srv.config_path.write_text(external_first(cfg, external))
    driver = None
    try:
        srv.start()
        _, _, _, ct = clients(srv)
        arn = ct.create_trail(Name="outage", S3BucketName=bucket, EnableLogFileValidation=True)["TrailARN"]
        start_time = utc_start()
        ct.start_logging(Name=arn)
        t_logging = time.monotonic()
        _, _, sts_b, ct_b = clients(srv, account=ACCOUNT_B)
        arn_b = ct_b.create_trail(Name="late", S3BucketName=late)["TrailARN"]
        ct_b.start_logging(Name=arn_b)
        emb = f"outage-emb-{uuid.uuid4().hex[:8]}"
        s3_a = harness.s3_client(srv)
        s3_a.create_bucket(Bucket=emb)
        s3_a.put_bucket_policy(Bucket=emb, Policy=receiving_policy(emb, B))
        arn_emb = ct_b.create_trail(Name="embedded", S3BucketName=emb)["TrailARN"]
        ct_b.start_logging(Name=arn_emb)
        own: list[tuple[float, str, str]] = []  # this test's own calls of account A
        own_b: list[tuple[float, str, str]] = []  # account B's

        def status(client, name, into) -> dict:
            s = client.get_trail_status(Name=name)
            into.append((time.monotonic(), "GetTrailStatus", s["ResponseMetadata"]["RequestId"]))
            return s

        driver = Driver(srv, "bucket")
        driver.start()
        delivered = Delivered(moto, bucket)
        # Some deliveries before the outage.
        deadline = time.monotonic() + 20
        while not delivered.refresh().logs and time.monotonic() < deadline:
            time.sleep(0.5)
        assert delivered.logs, "no log file delivered before the outage"
        time.sleep(2)
        before = status(ct, arn, own)
        assert "LatestDeliveryError" not in before, before
        last_ok = before["LatestDeliveryTime"]

        # ---- the outage ----------------------------------------------------------------
        proxy.cut()
        t_cut = time.monotonic()
        errors_seen: list[str] = []
        errors_b: list[str] = []
        errors_emb: list[str | None] = []
        policy_removed = policy_restored = None
        while time.monotonic() - t_cut < OUTAGE_S:
            time.sleep(2)
            s = status(ct, arn, own)
            if "LatestDeliveryError" in s:
                errors_seen.append(s["LatestDeliveryError"])
            own_b.append((time.monotonic(), "GetCallerIdentity", sts_b.get_caller_identity()["ResponseMetadata"]["RequestId"]))
            errors_b.append(status(ct_b, arn_b, own_b).get("LatestDeliveryError"))
            # Meanwhile A takes away B's right to deliver into A's bucket, and gives it back
            # once GetTrailStatus shows the failure.
            e = status(ct_b, arn_emb, own_b).get("LatestDeliveryError")
            if policy_removed is None:
                s3_a.delete_bucket_policy(Bucket=emb)
                policy_removed = time.monotonic()
            elif policy_restored is None:
                errors_emb.append(e)
                if e == "AccessDenied":
                    s3_a.put_bucket_policy(Bucket=emb, Policy=receiving_policy(emb, B))
                    policy_restored = time.monotonic()
        n_during = len([1 for t, _, _ in driver.acked if t >= t_cut])
        proxy.restore()
        moto.create_bucket(Bucket=late)
        if policy_restored is None:
            s3_a.put_bucket_policy(Bucket=emb, Policy=receiving_policy(emb, B))
        t_restore = time.monotonic()

        # ---- recovery --------------------------------------------------------------------
        recovered = recovered_b = recovered_emb = None
        while time.monotonic() - t_restore < 30 and not (recovered and recovered_b and recovered_emb):
            time.sleep(1)
            s = recovered or status(ct, arn, own)
            if "LatestDeliveryError" not in s and s.get("LatestDeliveryTime") and s["LatestDeliveryTime"] > last_ok:
                recovered = s
            sb = recovered_b or status(ct_b, arn_b, own_b)
            if "LatestDeliveryError" not in sb and sb.get("LatestDeliveryTime"):
                recovered_b = sb
            se = recovered_emb or status(ct_b, arn_emb, own_b)
            if "LatestDeliveryError" not in se:
                recovered_emb = se
        time.sleep(2)  # calls go on after the recovery too
        driver.finish()
        summary = (f"{len(driver.acked)} acknowledged calls ({n_during} during the {OUTAGE_S:.0f}s outage), "
                   f"slowest {driver.slowest:.1f}s, delivery errors reported: {Counter(errors_seen)}, "
                   f"for the missing bucket: {Counter(errors_b)}, for the bucket without policy: {errors_emb}")
        assert not driver.failures, f"calls failed while the bucket was unreachable: {driver.failures[:10]}\n{summary}"
        assert n_during >= 20, f"too few calls during the outage: {summary}"
        assert errors_seen, f"GetTrailStatus never showed a LatestDeliveryError during the outage: {summary}"
        bad = [e for e in errors_seen if not S3_ERROR_CODE.match(e)]
        assert not bad, f"LatestDeliveryError should be an S3 error code, as AWS reports: {bad[:3]}"
        # A store that answers says why: its own S3 error code.
        assert "NoSuchBucket" in errors_b and set(errors_b) <= {None, "NoSuchBucket"}, summary
        assert recovered is not None, f"LatestDeliveryError not cleared / LatestDeliveryTime not advanced 30s after the restore: {s}\n{summary}"
        assert recovered_b is not None, f"the late bucket's trail did not recover: {sb}\n{summary}"
        # CloudTrail's word when the bucket policy does not let it write: AccessDenied.
        assert "AccessDenied" in errors_emb, summary
        assert set(errors_emb) <= {None, "AccessDenied"}, summary
        assert recovered_emb is not None, f"the embedded bucket's trail did not recover once the policy was back: {se}\n{summary}"
        warned = server_log_lines(srv, r"WARN.*external bucket write failed")
        assert warned, "the server logged nothing about the failed deliveries"

        # ---- every acknowledged call delivered exactly once ------------------------------
        acked = driver.acked + own
        missing = delivered.wait_for({rid for _, _, rid in acked}, timeout=30)
        assert not missing, f"{len(missing)} acknowledged calls never delivered: {sorted(missing)[:20]}\n{summary}"
        delivered.check_exactly_once(acked)
        delivered_b = Delivered(moto, late, account=B)
        missing = delivered_b.wait_for({rid for _, _, rid in own_b}, timeout=30)
        assert not missing, f"{len(missing)} of account B's calls never delivered into the late bucket: {sorted(missing)}"
        delivered_b.check_exactly_once(own_b)
        delivered_emb = Delivered(s3_a, emb, account=B)
        missing = delivered_emb.wait_for({rid for _, _, rid in own_b}, timeout=30)
        assert not missing, f"{len(missing)} of account B's calls never delivered into A's bucket: {sorted(missing)}"
        delivered_emb.check_exactly_once(own_b)

        # ---- digests cover the period; validate-logs -------------------------------------
        unlisted = delivered.wait_all_listed(t_logging + 2 * DIGEST_INTERVAL_S + 15)
        assert not unlisted, f"{len(unlisted)} log files in no digest: {sorted(unlisted)[:10]}"
        delivered.check_chain()
        validate_logs(srv, arn, start_time, tmp_path)
        panics = server_log_lines(srv, "panicked")
        assert not panics, f"the server panicked: {panics}"
        print(f"{summary}; {len(delivered.logs)} log files, {len(delivered.digests)} digests; "
              f"{time.monotonic() - t_begin:.0f}s in all")
    finally:
        if driver is not None and driver.is_alive():
            driver.stop_event.set()
        srv.stop()
        proxy.close()


# --------------------------------------------------------------------------------------
# 2. The data disk full
# --------------------------------------------------------------------------------------

TMPFS_SIZE = "64m"
FULL_S = 12.0
# What a client may get while the disk is full: a server-side AWS error with a message, named
# as each protocol names it (rest-json models: `…Exception`; query APIs: AWS's common errors).
FULL_CODES = {
    "ListStreams": {"ServiceUnavailableException", "InternalFailureException"},
    "CreateUser": {"ServiceUnavailable", "InternalFailure", "ServiceFailure"},
    "DeleteUser": {"ServiceUnavailable", "InternalFailure", "ServiceFailure"},
    "GetCallerIdentity": {"ServiceUnavailable", "InternalFailure"},
}


@pytest.fixture
def tmpfs_mount():
    """Mounts a small tmpfs on a directory (unique per test run); unmounts at teardown."""
    mounted: list[Path] = []

    def mount(path: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("the disk-full test mounts a tmpfs and needs root")
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): the disk-full test needs it")
        mounted.append(path)

    yield mount
    for path in mounted:
        r = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True)


def fill(path: Path) -> int:
    """Writes `path` until the filesystem is full; returns its size."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 64 << 10, 4 << 10, 512):
            block = b"\0" * chunk
            while True:
                try:
                    n = f.write(block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                written += n or 0
                if not n:
                    break
    return written


def test_data_disk_full(server_factory, tmpfs_mount, tmp_path):
    if harness.EXTERNAL_S3:
        pytest.skip("the disk-full test is about the embedded store: object bytes in the data directory")
    t_begin = time.monotonic()
    bucket = "outage-disk-audit"
    cfg = f"delivery_interval_seconds = 1\ndigest_interval_seconds = {DIGEST_INTERVAL_S}\n" + render_config(CONFIGURED_ACCOUNTS)
    srv = server_factory("configured", name="outage_disk", start=False)
    srv.config_path.write_text(cfg)
    tmpfs_mount(srv.data_dir)
    filler = srv.data_dir / "filler.bin"
    driver = None
    try:
        srv.start()
        s3 = harness.s3_client(srv)
        s3.create_bucket(Bucket=bucket)
        _, _, _, ct = clients(srv)
        arn = ct.create_trail(Name="disk", S3BucketName=bucket, EnableLogFileValidation=True)["TrailARN"]
        start_time = utc_start()
        ct.start_logging(Name=arn)
        t_logging = time.monotonic()
        driver = Driver(srv, "disk")
        driver.start()
        delivered = Delivered(s3, bucket)
        deadline = time.monotonic() + 20
        while not delivered.refresh().logs and time.monotonic() < deadline:
            time.sleep(0.5)
        assert delivered.logs, "no log file delivered before the disk filled"
        assert not driver.failures, f"calls failed before the disk filled: {driver.failures[:5]}"

        # ---- the disk fills ----------------------------------------------------------------
        t_full = time.monotonic()
        size = fill(filler)
        # Keep it full (SQLite may free a page or two) until enough calls have failed.
        while time.monotonic() - t_full < FULL_S or len(driver.failures) < 5:
            time.sleep(1)
            fill(srv.data_dir / f"filler-{uuid.uuid4().hex[:6]}.bin")
            assert srv.running, f"the server exited while the disk was full:\n{srv.describe_logs()}"
            if time.monotonic() - t_full > 40:
                break
        failures = list(driver.failures)
        acked_while_full = len([1 for t, _, _ in driver.acked if t >= t_full])
        summary = (f"filler {size >> 20} MiB; {len(failures)} calls failed and {acked_while_full} succeeded while full "
                   f"({Counter((f['op'], f['status'], f['code']) for f in failures)}), slowest call {driver.slowest:.1f}s")
        assert failures, f"no call failed with the disk full: {summary}"
        bad = [f for f in failures if f["status"] not in (500, 503) or f["code"] not in FULL_CODES[f["op"]] or not f["message"]
               or not f["request_id"]]
        assert not bad, f"calls failed without a clear 5xx AWS error while the disk was full: {bad[:5]}\n{summary}"
        slow = [f for f in failures if f["elapsed"] > 10]
        assert not slow, f"calls hung while the disk was full: {slow[:5]}\n{summary}"
        assert srv.running, "the server exited while the disk was full"
        said = server_log_lines(srv, r"(ERROR|WARN).*(database or disk is full|No space left on device|ENOSPC)")
        assert said, f"the server's log does not say the disk is full:\n{srv.describe_logs(40)}"
        t_failed_stats = (len(failures), acked_while_full)

        # ---- space again: the server recovers without a restart -------------------------
        for p in srv.data_dir.glob("filler*.bin"):
            p.unlink()
        t_free = time.monotonic()
        ok_again = None
        while time.monotonic() - t_free < 30:
            time.sleep(0.5)
            if any(t >= t_free + 0.5 for t, _, _ in driver.acked) and (
                    not driver.failures or driver.failures[-1]["t"] < driver.acked[-1][0]):
                ok_again = time.monotonic() - t_free
                break
        assert ok_again is not None, f"calls still fail 30 s after space was freed: {driver.failures[-3:]}\n{summary}"
        time.sleep(3)
        driver.finish()
        late = [f for f in driver.failures if f["t"] > t_free + ok_again + 0.5]
        assert not late, f"calls failed after the recovery: {late[:5]}"
        acked = list(driver.acked)
        summary += f"; calls succeed again {ok_again:.1f}s after space was freed; {len(acked)} acknowledged in all"

        missing = delivered.wait_for({rid for _, _, rid in acked}, timeout=40)
        assert not missing, (f"{len(missing)} acknowledged calls never delivered: {sorted(missing)[:20]}\n{summary}\n"
                             f"{srv.describe_logs(40)}")
        delivered.check_exactly_once(acked)
        status = ct.get_trail_status(Name=arn)
        acked.append((time.monotonic(), "GetTrailStatus", status["ResponseMetadata"]["RequestId"]))

        # ---- a restart: the database opens, and calls work -------------------------------
        rc, needed_kill = srv.stop()
        assert not needed_kill, "the server did not stop within 5 s of SIGTERM"
        integrity = sqlite3.connect(f"file:{srv.data_dir / 'otatrail.db'}?mode=ro", uri=True).execute(
            "PRAGMA integrity_check").fetchall()
        assert integrity == [("ok",)], f"the database is damaged: {integrity[:10]}"
        srv.start(srv.port)
        iot, _, sts, ct = clients(srv)
        for _ in range(3):
            acked.append((time.monotonic(), "GetCallerIdentity", sts.get_caller_identity()["ResponseMetadata"]["RequestId"]))
        missing = delivered.wait_for({rid for _, _, rid in acked}, timeout=30)
        assert not missing, f"{len(missing)} acknowledged calls never delivered after the restart: {sorted(missing)[:20]}"
        delivered.check_exactly_once(acked)

        # ---- digests cover the period; validate-logs on the stopped server ---------------
        unlisted = delivered.wait_all_listed(t_logging + 2 * DIGEST_INTERVAL_S + 15)
        assert not unlisted, f"{len(unlisted)} log files in no digest: {sorted(unlisted)[:10]}\n{summary}"
        delivered.check_chain()
        srv.stop()
        # A write the full disk failed must not leave its partial blob behind.
        leftovers = list((srv.data_dir / "objects" / "tmp").glob("*"))
        assert not leftovers, f"{len(leftovers)} partial blob files left in objects/tmp: {leftovers[:5]}"
        validate_logs(srv, arn, start_time, tmp_path)
        panics = server_log_lines(srv, "panicked")
        assert not panics, f"the server panicked: {panics}"
        print(f"{summary}; {len(delivered.logs)} log files, {len(delivered.digests)} digests; "
              f"{time.monotonic() - t_begin:.0f}s in all")
    finally:
        if driver is not None and driver.is_alive():
            driver.stop_event.set()
        srv.stop()
        for p in srv.data_dir.glob("filler*.bin"):
            p.unlink()
