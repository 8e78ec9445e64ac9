"""Benchmark: `aws cloudtrail validate-logs` vs `otatrail validate-logs` on the same trail.

    .venv/bin/python bench/validate_logs.py [--files 1000] [--threads 8] [--repeat 1] [--keep]

Starts an otatrail server (conformance-suite harness) that writes one log file per recorded call
(`log_file_max_records = 1`, delivery every second, a digest every 60 s), makes concurrent IAM,
CloudTrail and IoT calls until the trail's bucket holds at least --files log files, waits until
the digests list all of them, then times both tools back to back on the same trail and range
(ours over the wire with --endpoint-url/--s3-endpoint-url, as the AWS tool works, and also with
--data-dir). Both must report everything valid. Prints a table and the aws/otatrail ratio and
writes bench/results/validate_logs.json.

The binary is $OTATRAIL_BIN, else target/debug/otatrail; for figures worth quoting build and
point at a release binary (`cargo build --release -p otatrail`,
`OTATRAIL_BIN=target/release/otatrail`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "conformance"))

# No AWS_* setting or ~/.aws file of the person running this may leak into boto3.
for _k in [k for k in os.environ if k.startswith("AWS_")]:
    del os.environ[_k]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from harness import (  # noqa: E402
    ACCOUNT_A,
    CONFIGURED_ACCOUNTS,
    REGION,
    ConfiguredServer,
    ServerStartError,
    aws_cli_command,
    clean_env,
    make_client,
    otatrail_binary,
    render_config,
    s3_client,
    unique,
)

CONFIG = (
    "delivery_interval_seconds = 1\n"
    "digest_interval_seconds = 60\n"
    "log_file_max_records = 1\n"
) + render_config(CONFIGURED_ACCOUNTS)
BUCKET = "bench-audit-logs"
TRAIL = "bench-trail"
RESULTS = BENCH_DIR / "results" / "validate_logs.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def list_keys(s3, folder: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"AWSLogs/{ACCOUNT_A.id}/{folder}/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


class Caller:
    """Recorded calls from several threads (one set of clients per thread)."""

    def __init__(self, srv, threads: int):
        self.srv = srv
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.errors = 0

    def _clients(self):
        c = getattr(self.local, "clients", None)
        if c is None:
            c = self.local.clients = (
                make_client("iam", self.srv, max_pool_connections=4),
                make_client("cloudtrail", self.srv, max_pool_connections=4),
                make_client("iot", self.srv, max_pool_connections=4),
            )
        return c

    def _one(self, i: int) -> None:
        iam, ct, iot = self._clients()
        try:
            match i % 3:
                case 0:
                    iam.create_user(UserName=unique("bench"))
                case 1:
                    ct.get_trail_status(Name=TRAIL)
                case _:
                    iot.list_streams(maxResults=1)
        except Exception:
            self.errors += 1

    def run(self, n: int) -> None:
        list(self.pool.map(self._one, range(n)))


def aws_validate(srv, arn: str, start: str, home: Path) -> tuple[list[str], dict]:
    p = srv.root(ACCOUNT_A)
    env = clean_env(
        {
            "AWS_ACCESS_KEY_ID": p.access_key_id,
            "AWS_SECRET_ACCESS_KEY": p.secret_access_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": srv.s3_endpoint,  # its S3 client ignores --endpoint-url
            "AWS_CONFIG_FILE": str(home / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        home=home,
    )
    cmd = aws_cli_command() + [
        "cloudtrail", "validate-logs", "--endpoint-url", srv.endpoint, "--trail-arn", arn, "--start-time", start,
    ]
    return cmd, env


def ours_validate(srv, arn: str, start: str, home: Path, mode: str) -> tuple[list[str], dict]:
    p = srv.root(ACCOUNT_A)
    env = clean_env(
        {"AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"), "AWS_EC2_METADATA_DISABLED": "true"},
        home=home,
    )
    cmd = [str(srv.binary), "validate-logs", "--trail-arn", arn, "--start-time", start]
    if mode == "endpoint":
        cmd += ["--endpoint-url", srv.endpoint, "--s3-endpoint-url", srv.s3_endpoint]
        env.update({"AWS_ACCESS_KEY_ID": p.access_key_id, "AWS_SECRET_ACCESS_KEY": p.secret_access_key, "AWS_DEFAULT_REGION": REGION})
    else:
        cmd += ["--data-dir", str(srv.data_dir), "--config", str(srv.config_path)]
    return cmd, env


def timed(name: str, cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    m_d = re.search(r"^(\d+)/(\d+) digest files valid", proc.stdout, re.M)
    m_l = re.search(r"^(\d+)/(\d+) log files valid", proc.stdout, re.M)
    all_valid = (
        proc.returncode == 0 and m_d is not None and m_l is not None
        and m_d.group(1) == m_d.group(2) and m_l.group(1) == m_l.group(2) and "INVALID" not in out
    )
    files = int(m_l.group(2)) if m_l else 0
    r = {
        "tool": name,
        "seconds": round(seconds, 3),
        "exit": proc.returncode,
        "digests": int(m_d.group(2)) if m_d else 0,
        "log_files": files,
        "files_per_s": round(files / seconds, 1) if seconds > 0 else None,
        "all_valid": all_valid,
    }
    if not all_valid:
        r["output"] = out[-4000:]
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000, help="log files to validate (at least) [1000]")
    ap.add_argument("--threads", type=int, default=8, help="concurrent callers while making log files [8]")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tool; the table shows the fastest [1]")
    ap.add_argument("--keep", action="store_true", help="keep the server's work directory")
    args = ap.parse_args()

    binary = otatrail_binary()
    if not binary.is_file():
        print(f"otatrail binary not found ({binary}): cargo build -p otatrail, or set OTATRAIL_BIN", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="otatrail-bench-"))
    home = workdir / "home"
    home.mkdir()
    srv = ConfiguredServer(binary, workdir / "server", name="bench")
    srv.config_path.write_text(CONFIG)
    try:
        try:
            srv.start()
        except ServerStartError as e:
            print(f"the server did not start (does this build know log_file_max_records?):\n{e}", file=sys.stderr)
            return 2
        s3 = s3_client(srv)
        s3.create_bucket(Bucket=BUCKET)
        ct = make_client("cloudtrail", srv)
        arn = ct.create_trail(Name=TRAIL, S3BucketName=BUCKET, EnableLogFileValidation=True)["TrailARN"]
        start = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ct.start_logging(Name=arn)

        # Calls until the bucket holds enough log files (one recorded call = one file).
        caller = Caller(srv, args.threads)
        t0 = time.monotonic()
        have = 0
        while have < args.files:
            if time.monotonic() - t0 > 1800:
                print(f"only {have} log files after 30 minutes of calls", file=sys.stderr)
                return 2
            caller.run(args.files - have + 10)
            # Let delivery catch up (a file a record, written within a second or two).
            previous = -1
            for _ in range(30):
                time.sleep(1)
                have = len(list_keys(s3, "CloudTrail"))
                if have >= args.files or have == previous:
                    break
                previous = have
            log(f"{have} log files delivered ({caller.errors} failed calls)")
        log_keys = set(list_keys(s3, "CloudTrail"))
        log(f"calls done in {time.monotonic() - t0:.1f}s; waiting for digests to list all {len(log_keys)} log files")

        # Wait until the digests list every file delivered so far.
        listed: set[str] = set()
        seen: set[str] = set()
        deadline = time.monotonic() + 300
        while not log_keys <= listed:
            if time.monotonic() > deadline:
                print(f"digests list only {len(log_keys & listed)}/{len(log_keys)} log files after 300s", file=sys.stderr)
                return 2
            for k in list_keys(s3, "CloudTrail-Digest"):
                if k not in seen:
                    seen.add(k)
                    doc = json.loads(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()))
                    listed |= {f["s3Object"] for f in doc["logFiles"]}
            time.sleep(2)
        log(f"{len(seen)} digests list {len(listed)} log files")

        runs: dict[str, list[dict]] = {"aws cloudtrail validate-logs": [], "otatrail validate-logs --endpoint-url": [],
                                       "otatrail validate-logs --data-dir": []}
        for i in range(args.repeat):
            for name in runs:
                if name.startswith("aws"):
                    cmd, env = aws_validate(srv, arn, start, home)
                else:
                    cmd, env = ours_validate(srv, arn, start, home, "endpoint" if "endpoint" in name else "data-dir")
                r = timed(name, cmd, env)
                log(f"{name}: {r['seconds']:.2f}s, {r['log_files']} log files, exit {r['exit']}")
                runs[name].append(r)

        best = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}
        aws_s = best["aws cloudtrail validate-logs"]["seconds"]
        ours_s = best["otatrail validate-logs --endpoint-url"]["seconds"]
        ratio = round(aws_s / ours_s, 1) if ours_s > 0 else None

        print()
        print(f"{'tool':40} {'seconds':>9} {'log files':>10} {'files/s':>9}  valid")
        for name, r in best.items():
            print(f"{name:40} {r['seconds']:9.2f} {r['log_files']:10d} {r['files_per_s'] or 0:9.1f}  {'yes' if r['all_valid'] else 'NO'}")
        print(f"\naws / otatrail (--endpoint-url): {ratio}x")

        failed = [r for rs in runs.values() for r in rs if not r["all_valid"] or r["log_files"] < args.files]
        for r in failed:
            print(f"\n{r['tool']} did not report all {args.files}+ log files valid:\n{r.get('output', '')}", file=sys.stderr)

        aws_version = subprocess.run(aws_cli_command() + ["--version"], capture_output=True, text=True).stdout.strip()
        try:
            binary_label = str(binary.resolve().relative_to(REPO_ROOT))
        except ValueError:
            binary_label = binary.name
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "files_requested": args.files,
            "log_files_in_digests": len(listed),
            "digests": len(seen),
            "repeat": args.repeat,
            "otatrail_binary": binary_label,
            "aws_cli": aws_version,
            "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "best": list(best.values()),
            "runs": [r for rs in runs.values() for r in rs],
            "median_seconds": {name: round(statistics.median(r["seconds"] for r in rs), 3) for name, rs in runs.items()},
            "ratio_aws_over_otatrail_endpoint": ratio,
        }, indent=2) + "\n")
        log(f"wrote {RESULTS.relative_to(REPO_ROOT)}")
        return 1 if failed else 0
    finally:
        srv.stop()
        if args.keep:
            log(f"server work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
