"""Crash safety of the audit trail: every acknowledged call is delivered exactly once, across
SIGKILLs at random moments (README "The audit trail" and "Log file integrity").

One server (delivery every second, a digest every 60 s) with a bucket and a trail with log file
validation. A driver thread sends a steady mix of calls (IoT CreateStream/UpdateStream/
DeleteStream/DescribeStream, IAM CreateUser/DeleteUser/GetUser, STS GetCallerIdentity) with
botocore retries disabled, and remembers the request ID of every call that got a 2xx. Meanwhile
the main thread kills the server with SIGKILL at random moments (0.3-2.5 s apart) and restarts
it on the same data directory, for at least ten rounds and until past the first digest's due
time, so digests are written (or due) while the server keeps dying. Then:

- every acknowledged request ID is in exactly one delivered record of exactly one log file;
- no eventID and no requestID appears twice across all delivered files;
- every log file is a single gzip member holding `{"Records": [...]}`;
- the final state matches the acknowledged calls for every resource whose whole history was
  acknowledged (a call that failed on the wire may still have committed: resources touched by
  such a call are left out of that check), and for every resource the final state matches the
  delivered records (a state change and its record commit together);
- once a digest ends after the last delivered file, `otatrail validate-logs --data-dir` exits 0
  with no log file outside the digests and no chain break.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import re
import subprocess
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

import harness
from harness import ACCOUNT_A, CONFIGURED_ACCOUNTS, REGION, make_client, render_config, role_arn, s3_client

CONFIG = "delivery_interval_seconds = 1\ndigest_interval_seconds = 60\n" + render_config(CONFIGURED_ACCOUNTS)
BUCKET = "crash-safety-audit"
FW_BUCKET = "crash-safety-firmware"
FW_KEYS = ("fw/a.bin", "fw/b.bin")
TRAIL = "crash-trail"
A = ACCOUNT_A.id

MIN_ROUNDS = 10
# Keep killing until this long after StartLogging, so the first digest falls due while the
# server keeps dying (the digest interval is 60 s, counted from StartLogging).
CHAOS_UNTIL_S = 66.0
KILL_GAP_S = (0.3, 2.5)
DRAIN_TIMEOUT_S = 30.0
# From StartLogging until a digest must list every delivered file (a second digest is due at
# about 120 s).
DIGEST_DEADLINE_S = 165.0
TOOL_TIMEOUT_S = 120

MAX_LIVE_STREAMS = 8
MAX_LIVE_USERS = 5


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


@dataclass
class Resource:
    kind: str  # "stream" | "user"
    name: str
    attempts: list[str] = field(default_factory=list)  # operations tried, in order
    acked: list[tuple[str, str]] = field(default_factory=list)  # (operation, request id) with a 2xx
    uncertain: bool = False  # some call on it failed on the wire (it may have committed)
    version: int = 0  # streams: the last acknowledged streamVersion
    deleted: bool = False  # a delete was acknowledged


class Driver(threading.Thread):
    """Sends calls until stopped; remembers the request ID and operation of each 2xx."""

    def __init__(self, srv, seed: int):
        super().__init__(name="crash-safety-driver", daemon=True)
        self.srv = srv
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.acked: list[tuple[str, str, str]] = []  # (operation, request id, resource or "")
        self.failures = Counter()  # kind of failure -> count (connection errors, 5xx)
        self.unexpected: list[str] = []  # 4xx on resources whose history was all acknowledged
        self.resources: dict[str, Resource] = {}
        self.error: BaseException | None = None
        self.tag = uuid.uuid4().hex[:8]
        self.n = 0
        self._clients()

    def _clients(self) -> None:
        self.iot = make_client("iot", self.srv)
        self.iam = make_client("iam", self.srv)
        self.sts = make_client("sts", self.srv)

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
        except BaseException as e:  # reported by the test
            self.error = e

    def live(self, kind: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.kind == kind and not r.uncertain and not r.deleted]

    def new_name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.tag}-{self.n:05d}"

    def step(self) -> None:
        streams, users = self.live("stream"), self.live("user")
        roll = self.rng.random()
        if roll < 0.22 and len(streams) < MAX_LIVE_STREAMS or not streams and roll < 0.5:
            r = Resource("stream", self.new_name("crash"))
            self.resources[r.name] = r
            key = self.rng.choice(FW_KEYS)
            self.call(r, "CreateStream", self.iot.create_stream, streamId=r.name, roleArn=role_arn(A),
                      files=[{"fileId": 0, "s3Location": {"bucket": FW_BUCKET, "key": key}}], description="v1")
        elif roll < 0.5 and streams:
            r = self.rng.choice(streams)
            kw = {"description": f"v{r.version + 1}"}
            if self.rng.random() < 0.3:
                kw["files"] = [{"fileId": self.rng.randrange(5), "s3Location": {"bucket": FW_BUCKET, "key": self.rng.choice(FW_KEYS)}}]
            self.call(r, "UpdateStream", self.iot.update_stream, streamId=r.name, **kw)
        elif roll < 0.62 and streams:
            r = self.rng.choice(streams)
            self.call(r, "DeleteStream", self.iot.delete_stream, streamId=r.name)
        elif roll < 0.75 and (len(users) < MAX_LIVE_USERS or not users):
            r = Resource("user", self.new_name("crash-user"))
            self.resources[r.name] = r
            self.call(r, "CreateUser", self.iam.create_user, UserName=r.name)
        elif roll < 0.85 and users:
            r = self.rng.choice(users)
            self.call(r, "DeleteUser", self.iam.delete_user, UserName=r.name)
        elif roll < 0.9 and streams:
            r = self.rng.choice(streams)
            self.call(r, "DescribeStream", self.iot.describe_stream, streamId=r.name)
        elif roll < 0.95 and users:
            r = self.rng.choice(users)
            self.call(r, "GetUser", self.iam.get_user, UserName=r.name)
        else:
            self.call(None, "GetCallerIdentity", self.sts.get_caller_identity)

    def call(self, res: Resource | None, op: str, fn, **kw) -> None:
        if res is not None:
            res.attempts.append(op)
        try:
            resp = fn(**kw)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or status == 0:
                self.failures[f"HTTP {status} {e.response.get('Error', {}).get('Code')}"] += 1
                if res is not None:
                    res.uncertain = True
                time.sleep(0.05)
                return
            # A 4xx on a resource whose every call was acknowledged: its state was lost.
            rid = e.response.get("ResponseMetadata", {}).get("RequestId")
            self.unexpected.append(f"{op} {res.name if res else ''} -> HTTP {status} {e.response.get('Error')} (request {rid})")
            if res is not None:
                res.uncertain = True
            return
        except Exception as e:  # connection refused/reset, timeouts: the server is down
            self.failures[type(e).__name__] += 1
            if res is not None:
                res.uncertain = True
            time.sleep(0.05)
            return
        md = resp["ResponseMetadata"]
        status, rid = md.get("HTTPStatusCode"), md.get("RequestId")
        assert 200 <= status < 300 and rid, f"{op}: {md}"
        self.acked.append((op, rid, res.name if res else ""))
        if res is None:
            return
        res.acked.append((op, rid))
        if op == "CreateStream":
            res.version = resp["streamVersion"]
        elif op == "UpdateStream":
            res.version = resp["streamVersion"]
        elif op in ("DeleteStream", "DeleteUser"):
            res.deleted = True


# --------------------------------------------------------------------------------------
# The bucket
# --------------------------------------------------------------------------------------


def list_keys(s3) -> list[dict]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="AWSLogs/"):
        out += page.get("Contents", [])
    return out


def gunzip_one_member(body: bytes, where: str) -> bytes:
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    raw = d.decompress(body) + d.flush()
    assert d.eof, f"{where}: truncated gzip stream"
    assert d.unused_data == b"", f"{where}: data after the first gzip member ({len(d.unused_data)} bytes)"
    return raw


LOG_KEY_RE = re.compile(
    rf"^AWSLogs/{A}/CloudTrail/{REGION}/\d{{4}}/\d\d/\d\d/{A}_CloudTrail_{REGION}_\d{{8}}T\d{{4}}Z_[A-Za-z0-9]{{16}}\.json\.gz$"
)


class Bucket:
    """Log files and digests of the trail's bucket; a delivered object never changes, so each
    is read once."""

    def __init__(self, s3):
        self.s3 = s3
        self.logs: dict[str, list[dict]] = {}
        self.digests: dict[str, dict] = {}

    def refresh(self) -> "Bucket":
        for obj in list_keys(self.s3):
            key = obj["Key"]
            if key in self.logs or key in self.digests:
                continue
            body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            if "/CloudTrail-Digest/" in key:
                self.digests[key] = json.loads(gzip.decompress(body))
                continue
            assert LOG_KEY_RE.match(key), f"unexpected object {key!r} in the log bucket"
            doc = json.loads(gunzip_one_member(body, key))
            assert isinstance(doc, dict) and list(doc) == ["Records"], f"{key}: top level is {list(doc)!r}"
            assert isinstance(doc["Records"], list) and doc["Records"], f"{key}: no records"
            self.logs[key] = doc["Records"]
        return self

    def where(self) -> dict[str, list[str]]:
        """request ID -> the keys of the files holding a record of it (once per record)."""
        out = defaultdict(list)
        for key, recs in self.logs.items():
            for r in recs:
                out[r.get("requestID")].append(key)
        return out

    def records(self) -> list[dict]:
        return [r for recs in self.logs.values() for r in recs]

    def listed(self) -> set[str]:
        return {f["s3Object"] for d in self.digests.values() for f in d["logFiles"]}


# --------------------------------------------------------------------------------------
# validate-logs
# --------------------------------------------------------------------------------------


def data_dir_args(srv) -> list[str]:
    """--data-dir (plus --config); in the external-store mode a config file carries the flags
    the server got its store through (as test_validate_logs does)."""
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


def count_line(stdout: str, what: str) -> int | None:
    m = re.search(rf"^(\d+) {what}$", stdout, re.M)
    return int(m.group(1)) if m else None


def server_log_lines(srv, *needles: str, limit: int = 60) -> str:
    """Lines of every run's stdout/stderr that mention any of `needles` (evidence for a failure)."""
    out = []
    for p in srv.log_files():
        for line in p.read_text(errors="replace").splitlines():
            if any(n in line for n in needles):
                out.append(f"{p.name}: {line}")
    if len(out) > limit:
        out = out[:limit] + [f"... ({len(out) - limit} more)"]
    return "\n".join(out) or "(no server log line mentions them)"


# --------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------


def test_acknowledged_calls_delivered_exactly_once_across_sigkills(server_factory, tmp_path):
    t_begin = time.monotonic()
    srv = server_factory("configured", name="crash_safety", start=False)
    srv.config_path.write_text(CONFIG)
    srv.start()
    s3 = s3_client(srv)
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=FW_BUCKET)
    for k in FW_KEYS:
        s3.put_object(Bucket=FW_BUCKET, Key=k, Body=b"\x7fELF crash-safety firmware " + k.encode())
    ct = make_client("cloudtrail", srv)
    arn = ct.create_trail(Name=TRAIL, S3BucketName=BUCKET, EnableLogFileValidation=True)["TrailARN"]
    start_time = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ct.start_logging(Name=arn)
    t_logging = time.monotonic()

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    driver = Driver(srv, seed)
    driver.start()
    rounds = 0
    try:
        while rounds < MIN_ROUNDS or time.monotonic() - t_logging < CHAOS_UNTIL_S:
            time.sleep(rng.uniform(*KILL_GAP_S))
            srv.kill()
            rounds += 1
            srv.start(srv.port)
            if driver.error is not None:
                break
        # Some calls with the server up after the last restart.
        time.sleep(1.0)
    finally:
        driver.stop_event.set()
        driver.join(timeout=70)
    assert not driver.is_alive(), "the driver thread did not stop"
    if driver.error is not None:
        raise driver.error
    t_chaos_end = time.monotonic()
    acked = driver.acked
    summary = (
        f"seed {seed}, {rounds} SIGKILLs in {t_chaos_end - t_logging:.0f}s, {len(acked)} acknowledged calls "
        f"({dict(Counter(op for op, _, _ in acked))}), failures on the wire {dict(driver.failures)}"
    )
    assert rounds >= MIN_ROUNDS, summary
    assert len(acked) >= 50, f"too few acknowledged calls to mean anything: {summary}"
    assert sum(driver.failures.values()) > 0, f"no call ever failed: the kills were not exercised ({summary})"
    assert not driver.unexpected, (
        "calls on resources whose every earlier call was acknowledged failed with a client error "
        f"(acknowledged state lost?):\n" + "\n".join(driver.unexpected[:20]) + f"\n{summary}"
    )

    # ---- final state (read before the drain: these reads' own records are delivered too) ----
    iot, iam, s3 = make_client("iot", srv), make_client("iam", srv), s3_client(srv)
    own_reads = []  # their request IDs: they must be delivered before the digest wait
    streams = {}
    for page in iot.get_paginator("list_streams").paginate():
        own_reads.append(("ListStreams", page["ResponseMetadata"]["RequestId"], ""))
        for s in page.get("streams", []):
            streams[s["streamId"]] = s
    users = set()
    for page in iam.get_paginator("list_users").paginate():
        own_reads.append(("ListUsers", page["ResponseMetadata"]["RequestId"], ""))
        users |= {u["UserName"] for u in page.get("Users", [])}

    # ---- every acknowledged record delivered (the server stays up from here on) -----------
    bucket = Bucket(s3)
    want = {rid for _, rid, _ in acked + own_reads}
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        missing = want - set(bucket.refresh().where())
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    label = {rid: f"{op} {name}".strip() for op, rid, name in acked + own_reads}
    assert not missing, (
        f"{len(missing)} of {len(want)} acknowledged calls never delivered within {DRAIN_TIMEOUT_S:.0f}s: "
        + ", ".join(f"{rid} ({label[rid]})" for rid in sorted(missing)[:30])
        + f"\n{len(bucket.logs)} log files delivered\n{summary}\nserver log lines:\n"
        + server_log_lines(srv, *sorted(missing)[:10], "panicked", "ERROR")
    )

    # ---- wait for a digest that lists every delivered file --------------------------------
    deadline = t_logging + DIGEST_DEADLINE_S
    while True:
        bucket.refresh()
        unlisted = set(bucket.logs) - bucket.listed()
        if not unlisted or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not unlisted, (
        f"{len(unlisted)} of {len(bucket.logs)} log files not listed in any of the {len(bucket.digests)} digests "
        f"{DIGEST_DEADLINE_S:.0f}s after StartLogging: {sorted(unlisted)[:10]}\n{summary}"
    )
    # Nothing below makes a recorded call until validate-logs ran on the stopped server.

    # ---- exactly once --------------------------------------------------------------------
    where = bucket.where()
    not_once = {rid: where.get(rid, []) for rid in want if len(where.get(rid, [])) != 1}
    assert not not_once, (
        "acknowledged calls not delivered exactly once: "
        + "; ".join(f"{rid} ({label[rid]}) in {keys}" for rid, keys in list(not_once.items())[:20])
        + f"\n{summary}\nserver log lines:\n" + server_log_lines(srv, *[k.rsplit('/', 1)[-1] for ks in not_once.values() for k in ks][:10])
    )
    records = bucket.records()
    event_ids = Counter(r["eventID"] for r in records)
    dup_events = {e: n for e, n in event_ids.items() if n > 1}
    files_of_event = defaultdict(list)
    for key, recs in bucket.logs.items():
        for r in recs:
            if r["eventID"] in dup_events:
                files_of_event[r["eventID"]].append(key)
    assert not dup_events, (
        f"{len(dup_events)} eventIDs delivered more than once: "
        + "; ".join(f"{e} x{n} in {files_of_event[e]}" for e, n in list(dup_events.items())[:20])
        + f"\n{summary}\nserver log lines:\n"
        + server_log_lines(srv, *[k.rsplit('/', 1)[-1] for ks in files_of_event.values() for k in ks][:10])
    )
    dup_rids = {r: len(ks) for r, ks in where.items() if r is not None and len(ks) > 1}
    assert not dup_rids, (
        f"requestIDs with more than one delivered record: "
        + "; ".join(f"{r} x{n} in {where[r]}" for r, n in list(dup_rids.items())[:20]) + f"\n{summary}"
    )

    # ---- state against the acknowledged calls (resources with a fully acknowledged history) ----
    problems = []
    certain = [r for r in driver.resources.values() if not r.uncertain]
    for r in certain:
        if r.kind == "stream":
            if r.deleted:
                if r.name in streams:
                    problems.append(f"stream {r.name}: deleted (acknowledged {r.acked[-1][1]}) but still listed")
            elif r.name not in streams:
                problems.append(f"stream {r.name}: acknowledged {r.acked} but missing")
            elif streams[r.name]["streamVersion"] != r.version:
                problems.append(f"stream {r.name}: version {streams[r.name]['streamVersion']}, acknowledged {r.version} ({r.acked})")
        else:
            if r.deleted and r.name in users:
                problems.append(f"user {r.name}: deleted (acknowledged {r.acked[-1][1]}) but still listed")
            elif not r.deleted and r.name not in users:
                problems.append(f"user {r.name}: acknowledged {r.acked} but missing")
    assert not problems, "state does not match the acknowledged calls:\n" + "\n".join(problems[:30]) + f"\n{summary}"

    # ---- state against the delivered records (every resource: a change commits with its record) ----
    ops_of = defaultdict(Counter)
    for rec in records:
        if rec.get("errorCode"):
            continue
        params = rec.get("requestParameters") or {}
        name = params.get("streamId") or params.get("userName")
        if name in driver.resources:
            ops_of[name][rec["eventName"]] += 1
    for r in driver.resources.values():
        ops = ops_of[r.name]
        tried = Counter(r.attempts)
        over = {op: n for op, n in ops.items() if n > tried[op]}
        if over:
            problems.append(f"{r.kind} {r.name}: more successful records {dict(ops)} than calls {dict(tried)}")
        if r.kind == "stream":
            exists = ops["CreateStream"] > 0 and ops["DeleteStream"] == 0
            if exists != (r.name in streams):
                problems.append(f"stream {r.name}: listed={r.name in streams} but delivered records {dict(ops)} (calls {r.attempts}, acknowledged {r.acked})")
            elif exists and streams[r.name]["streamVersion"] != 1 + ops["UpdateStream"]:
                problems.append(f"stream {r.name}: version {streams[r.name]['streamVersion']} but delivered records {dict(ops)}")
        else:
            exists = ops["CreateUser"] > 0 and ops["DeleteUser"] == 0
            if exists != (r.name in users):
                problems.append(f"user {r.name}: listed={r.name in users} but delivered records {dict(ops)} (calls {r.attempts}, acknowledged {r.acked})")
    # Calls that failed on the wire but committed (their records are delivered): the case the
    # "acknowledged only" rule above exists for.
    mutating = {"CreateStream", "UpdateStream", "DeleteStream", "CreateUser", "DeleteUser"}
    unanswered_commits = sum(
        max(0, sum(n for op, n in ops_of[r.name].items() if op in mutating) - sum(1 for op, _ in r.acked if op in mutating))
        for r in driver.resources.values()
    )
    summary += f", {unanswered_commits} calls committed without an answer"
    assert not problems, "state does not match the delivered records:\n" + "\n".join(problems[:30]) + f"\n{summary}"

    # ---- the digests: one chain, and otatrail validate-logs on the stopped server ----------
    chain = sorted(bucket.digests, key=lambda k: bucket.digests[k]["digestEndTime"])
    for older, newer in zip(chain, chain[1:]):
        assert bucket.digests[newer]["previousDigestS3Object"] == older, f"{newer} does not follow {older}"
        assert bucket.digests[newer]["digestStartTime"] == bucket.digests[older]["digestEndTime"], (older, newer)
    rc, needed_kill = srv.stop()
    assert not needed_kill, "otatrail did not exit within 5 s of SIGTERM"
    cmd = [str(srv.binary), "validate-logs", "--trail-arn", arn, "--start-time", start_time, "--verbose"] + data_dir_args(srv)
    env = harness.clean_env(
        {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
         "AWS_EC2_METADATA_DISABLED": "true"},
        home=tmp_path,
    )
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    report = f"validate-logs exited {run.returncode}\n--- stdout ---\n{run.stdout[-6000:]}\n--- stderr ---\n{run.stderr[-3000:]}\n{summary}"
    assert run.returncode == 0, report
    assert count_line(run.stdout, "log files not listed in any digest") == 0, report
    assert count_line(run.stdout, "digest chain breaks") == 0, report
    m = re.search(r"^(\d+)/(\d+) log files valid", run.stdout, re.M)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) == len(bucket.logs), report
    m = re.search(r"^(\d+)/(\d+) digest files valid", run.stdout, re.M)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) == len(bucket.digests), report

    panics = server_log_lines(srv, "panicked")
    assert "panicked" not in panics, f"the server panicked:\n{panics}"
    print(f"{summary}; {len(bucket.logs)} log files, {len(records)} records, {len(bucket.digests)} digests, "
          f"{len(certain)}/{len(driver.resources)} resources with a fully acknowledged history; "
          f"{time.monotonic() - t_begin:.0f}s in all")
