"""Helpers for the otatrail end-to-end conformance suite.

Everything here talks to a real `otatrail serve` process over HTTP on 127.0.0.1.
The fixtures in conftest.py wrap these helpers; test modules import the helpers
they need directly (``from harness import ...``).
"""

from __future__ import annotations

import configparser
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from urllib.parse import urlencode

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

# --------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
REGION = "us-east-1"
READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 5.0


def otatrail_binary() -> Path:
    env = os.environ.get("OTATRAIL_BIN")
    if env:
        # Absolute: servers are started in their own work directories, where a path relative
        # to the caller's would name nothing.
        return Path(env).resolve()
    return REPO_ROOT / "target" / "debug" / "otatrail"


def aws_cli_command() -> list[str]:
    """The aws CLI v1 of the virtualenv running the tests (or the repo's .venv)."""
    candidates = [
        Path(sys.executable).parent / "aws",
        REPO_ROOT / ".venv" / "bin" / "aws",
    ]
    for c in candidates:
        if c.is_file():
            # Run it with the interpreter of its own venv so a moved venv still works.
            py = c.parent / "python"
            return [str(py), str(c)] if py.exists() else [str(c)]
    found = shutil.which("aws")
    if found:
        return [found]
    raise RuntimeError("aws CLI not found (install tests/requirements.txt into the venv)")


# --------------------------------------------------------------------------------------
# Accounts declared in the config file used by the shared `server` fixture
# --------------------------------------------------------------------------------------


@dataclass
class Principal:
    access_key_id: str
    secret_access_key: str
    account_id: str
    user_name: str | None = None  # None = account root


@dataclass
class AccountSpec:
    id: str
    root_key: str
    root_secret: str
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (key, secret)


ACCOUNT_A = AccountSpec(
    id="111122223333",
    root_key="AKIAROOT0000EXAMPLE1",
    root_secret="rootsecret/EXAMPLE/0000000000000000000000",
    users={"alice": ("AKIAALICE000EXAMPLE1", "alicesecret/EXAMPLE/000000000000000000000")},
)
# A second account, used to check that streams are scoped to their account.
ACCOUNT_B = AccountSpec(
    id="444455556666",
    root_key="AKIAROOT0000EXAMPLE2",
    root_secret="rootsecret/EXAMPLE/2222222222222222222222",
)
CONFIGURED_ACCOUNTS = [ACCOUNT_A, ACCOUNT_B]


def render_config(accounts: list[AccountSpec], region: str = REGION) -> str:
    def q(s: str) -> str:
        return json.dumps(s)  # a JSON string literal is a valid TOML basic string here

    lines = [f"region = {q(region)}", ""]
    for acct in accounts:
        lines += [
            "[[accounts]]",
            f"id = {q(acct.id)}",
            f"root_access_key_id = {q(acct.root_key)}",
            f"root_secret_access_key = {q(acct.root_secret)}",
        ]
        for name, (key, secret) in acct.users.items():
            lines += [
                "[[accounts.users]]",
                f"name = {q(name)}",
                "[[accounts.users.access_keys]]",
                f"id = {q(key)}",
                f"secret = {q(secret)}",
            ]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Server process
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None, home: str | os.PathLike | None = None) -> dict[str, str]:
    """The inherited environment without any AWS_* variable (plus `extra`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if home is not None:
        env["HOME"] = str(home)
    if extra:
        env.update(extra)
    return env


class ServerStartError(AssertionError):
    pass


# --------------------------------------------------------------------------------------
# The external-store mode: with OTATRAIL_TEST_EXTERNAL_S3=1 every server keeps its object
# bytes in an independent S3 implementation (moto_server, from the venv) on loopback, so the
# same tests prove the external backend.
# --------------------------------------------------------------------------------------

EXTERNAL_S3 = os.environ.get("OTATRAIL_TEST_EXTERNAL_S3") == "1"
_MOTO: dict = {}


def moto_endpoint() -> str:
    """Starts moto_server once per test session and returns its endpoint."""
    if "endpoint" not in _MOTO:
        import atexit

        port = free_port()
        exe = Path(sys.executable).parent / "moto_server"
        log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"moto-{port}.log", "wb")
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        atexit.register(proc.kill)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except Exception:
                time.sleep(0.2)
        _MOTO.update(endpoint=endpoint, proc=proc)
    return _MOTO["endpoint"]


def external_store_flags(name: str) -> list[str]:
    """A fresh bucket in moto for one server, and the flags that point the server at it."""
    endpoint = moto_endpoint()
    bucket = f"ext-{name.lower().replace('_', '-')[:30]}-{uuid.uuid4().hex[:8]}"
    s3 = boto3.session.Session().client(
        "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="moto", aws_secret_access_key="moto"
    )
    s3.create_bucket(Bucket=bucket)
    return ["--s3-endpoint", endpoint, "--s3-bucket", bucket, "--s3-access-key-id", "moto", "--s3-secret-access-key", "moto"]


# Servers currently running; conftest prints their logs when a test fails.
RUNNING_SERVERS: list["OtatrailServer"] = []


class OtatrailServer:
    """One otatrail data directory, which can be started and stopped several times."""

    def __init__(self, binary: Path, workdir: Path, *, config: str | None = None, name: str = "otatrail"):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.log_dir = self.workdir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.name = name
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = self.workdir / "otatrail.toml"
            self.config_path.write_text(config)
        self.port: int | None = None
        self.s3_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.stdout_path: Path | None = None
        self.stderr_path: Path | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> "OtatrailServer":
        assert self.proc is None, "server already running"
        if port is not None:
            self.port = port
        elif self.port is None:
            self.port = free_port()
        if self.s3_port is None:
            self.s3_port = free_port()
        self.runs += 1
        self.stdout_path = self.log_dir / f"{self.name}.run{self.runs}.stdout.log"
        self.stderr_path = self.log_dir / f"{self.name}.run{self.runs}.stderr.log"
        cmd = [
            str(self.binary), "serve", "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}", "--s3-listen", f"127.0.0.1:{self.s3_port}",
        ]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        if EXTERNAL_S3:
            if not hasattr(self, "_external_flags"):
                self._external_flags = external_store_flags(self.name)
            cmd += self._external_flags
        env = clean_env({"RUST_BACKTRACE": "1"}, home=self.workdir)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=self.workdir)
        RUNNING_SERVERS.append(self)
        self._wait_ready(cmd)
        return self

    def _wait_ready(self, cmd: list[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_err = "no attempt"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._forget()
                raise ServerStartError(
                    f"otatrail exited with code {rc} before becoming ready.\n"
                    f"command: {' '.join(cmd)}\n{self.describe_logs()}"
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/_otatrail/health", timeout=2) as r:
                    if r.status == 200:
                        return
                    last_err = f"status {r.status}"
            except urllib.error.HTTPError as e:
                last_err = f"status {e.code}"
            except Exception as e:  # connection refused while starting
                last_err = repr(e)
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(
            f"otatrail did not answer 200 on /_otatrail/health within {READY_TIMEOUT_S:.0f}s "
            f"(last: {last_err}).\ncommand: {' '.join(cmd)}\n{self.describe_logs()}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int | None, bool]:
        """Send `sig`; SIGKILL after 5 s. Returns (returncode, needed_sigkill)."""
        if self.proc is None:
            return None, False
        needed_kill = False
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                needed_kill = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        rc = self.proc.returncode
        self._forget()
        return rc, needed_kill

    def kill(self) -> int | None:
        rc, _ = self.stop(signal.SIGKILL)
        return rc

    def restart(self, sig: int = signal.SIGTERM) -> "OtatrailServer":
        self.stop(sig)
        return self.start(self.port)

    def _forget(self) -> None:
        if self in RUNNING_SERVERS:
            RUNNING_SERVERS.remove(self)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- logs ------------------------------------------------------------------------

    def log_files(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def all_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.log_files())

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path else ""

    def describe_logs(self, max_lines: int = 80) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            text = path.read_text(errors="replace") if path and path.exists() else ""
            lines = text.splitlines()
            if len(lines) > max_lines:
                lines = [f"... ({len(lines) - max_lines} earlier lines omitted)"] + lines[-max_lines:]
            parts.append(f"----- otatrail {self.name} run {self.runs} {label} ({path}) -----\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- data ------------------------------------------------------------------------



class ConfiguredServer(OtatrailServer):
    """A server whose accounts come from a --config file."""

    def __init__(self, binary: Path, workdir: Path, accounts: list[AccountSpec] = CONFIGURED_ACCOUNTS, **kw):
        super().__init__(binary, workdir, config=render_config(accounts), **kw)
        self.accounts = accounts
        self.account = accounts[0]

    @property
    def account_id(self) -> str:
        return self.account.id

    def root(self, account: AccountSpec | None = None) -> Principal:
        a = account or self.account
        return Principal(a.root_key, a.root_secret, a.id)

    def user(self, name: str, account: AccountSpec | None = None) -> Principal:
        a = account or self.account
        key, secret = a.users[name]
        return Principal(key, secret, a.id, name)

    def secrets(self) -> list[str]:
        out = []
        for a in self.accounts:
            out.append(a.root_secret)
            out += [s for (_, s) in a.users.values()]
        return out


class FreshServer(OtatrailServer):
    """A server started with no config: it creates its own account and aws files."""

    @property
    def aws_dir(self) -> Path:
        return self.data_dir / "aws"

    @property
    def credentials_file(self) -> Path:
        return self.aws_dir / "credentials"

    @property
    def config_file(self) -> Path:
        return self.aws_dir / "config"

    def aws_env(self, home) -> dict[str, str]:
        """Exactly the three settings a user needs (on top of a clean environment)."""
        return clean_env(
            {
                "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials_file),
                "AWS_CONFIG_FILE": str(self.config_file),
                "AWS_PROFILE": "otatrail",
            },
            home=home,
        )

    def root(self, account=None) -> Principal:
        """The generated root key, as the `otatrail` profile holds it."""
        key, secret = self.profile_credentials()
        return Principal(key, secret, "")

    def profile_credentials(self) -> tuple[str, str]:
        cp = configparser.RawConfigParser()
        cp.read(self.credentials_file)
        sect = cp["otatrail"]
        return sect["aws_access_key_id"], sect["aws_secret_access_key"]


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------

NO_RETRY = {"total_max_attempts": 1}


def client_config(**kw) -> Config:
    return Config(retries=NO_RETRY, connect_timeout=5, read_timeout=60, **kw)


def _principal(server, key, secret) -> tuple[str, str]:
    if key is None:
        p = server.root()
        return p.access_key_id, p.secret_access_key
    return key, secret


def make_client(service: str, server, key: str | None = None, secret: str | None = None, **cfg):
    key, secret = _principal(server, key, secret)
    session = boto3.session.Session()
    return session.client(
        service,
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=client_config(**cfg),
    )


def iot_client(server, key: str | None = None, secret: str | None = None, **cfg):
    return make_client("iot", server, key, secret, **cfg)


def sts_client(server, key: str | None = None, secret: str | None = None, **cfg):
    return make_client("sts", server, key, secret, **cfg)


def client_for(service: str, server, principal: Principal, **cfg):
    return make_client(service, server, principal.access_key_id, principal.secret_access_key, **cfg)


# --------------------------------------------------------------------------------------
# Objects and streams
# --------------------------------------------------------------------------------------


def s3_client(server, key: str | None = None, secret: str | None = None, **cfg):
    """A boto3 S3 client for the server's S3 port (path-style, as with any custom endpoint)."""
    key, secret = _principal(server, key, secret)
    return boto3.session.Session().client(
        "s3",
        region_name=REGION,
        endpoint_url=server.s3_endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=client_config(**cfg),
    )


def put_object(server, bucket: str, key: str, data: bytes = b"\x7fELF firmware image", principal=None) -> None:
    """Uploads an object through the S3 endpoint as `principal` (default: the first account's
    root), creating the bucket in that account when it does not exist yet."""
    p = principal or server.root()
    s3 = s3_client(server, p.access_key_id, p.secret_access_key)
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
    s3.put_object(Bucket=bucket, Key=key, Body=data)


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def role_arn(account_id: str, name: str = "otatrail-ota-role") -> str:
    return f"arn:aws:iam::{account_id}:role/{name}"


def stream_arn(account_id: str, stream_id: str) -> str:
    return f"arn:aws:iot:{REGION}:{account_id}:stream/{stream_id}"


def s3file(file_id: int, bucket: str, key: str) -> dict:
    return {"fileId": file_id, "s3Location": {"bucket": bucket, "key": key}}


def firmware(server, bucket: str = "firmware-bucket", key: str | None = None) -> tuple[str, str]:
    """Puts a firmware object and returns (bucket, key)."""
    key = key or f"images/{uuid.uuid4().hex[:8]}.bin"
    put_object(server, bucket, key)
    return bucket, key


def create_stream(iot, server, stream_id: str | None = None, *, description: str | None = "firmware stream",
                  files: list[dict] | None = None, account_id: str | None = None, **kw) -> dict:
    stream_id = stream_id or unique()
    if files is None:
        b, k = firmware(server)
        files = [s3file(0, b, k)]
    params = {"streamId": stream_id, "files": files, "roleArn": role_arn(account_id or server.account_id)}
    if description is not None:
        params["description"] = description
    params.update(kw)
    return iot.create_stream(**params)


def list_all_streams(iot, page_size: int | None = None, ascending: bool | None = None) -> list[dict]:
    out, token = [], None
    for _ in range(10_000):
        kw = {}
        if page_size:
            kw["maxResults"] = page_size
        if ascending is not None:
            kw["ascendingOrder"] = ascending
        if token:
            kw["nextToken"] = token
        resp = iot.list_streams(**kw)
        out += resp.get("streams", [])
        token = resp.get("nextToken")
        if not token:
            return out
    raise AssertionError("ListStreams never stopped returning nextToken")


# --------------------------------------------------------------------------------------
# Error assertions
# --------------------------------------------------------------------------------------


def clean_code(code: str | None) -> str | None:
    """botocore's normalisation of an error code: before ':' then after '#'."""
    if code is None:
        return None
    return code.split(":")[0].split("#")[-1]


def assert_client_error(exc, code: str, status: int, message_contains: str | None = None) -> dict:
    """Checks a botocore ClientError; returns its response dict."""
    resp = getattr(exc, "response", None)
    assert resp is not None, f"expected a ClientError, got {exc!r}"
    got_code = resp.get("Error", {}).get("Code")
    got_status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    assert (got_code, got_status) == (code, status), (
        f"expected {code} (HTTP {status}), got {got_code} (HTTP {got_status}): {resp.get('Error')}"
    )
    assert resp["ResponseMetadata"].get("RequestId"), f"error response without request id: {resp['ResponseMetadata']}"
    if message_contains is not None:
        msg = resp["Error"].get("Message", "")
        assert message_contains in msg, f"{message_contains!r} not in error message {msg!r}"
    return resp


# --------------------------------------------------------------------------------------
# Raw HTTP
# --------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: Message
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self) -> str:
        return f"RawResponse({self.status}, headers={dict(self.headers.items())}, body={self.body[:500]!r})"


def sign_request(server, method: str, path: str, *, body: bytes = b"", headers: dict | None = None,
                 service: str = "iot", key: str | None = None, secret: str | None = None,
                 query: dict | None = None) -> tuple[str, dict]:
    """Returns (path_with_query, headers) of a SigV4-signed request as botocore would sign it."""
    key, secret = _principal(server, key, secret)
    target = path + ("?" + urlencode(query) if query else "")
    req = AWSRequest(method=method, url=server.endpoint + target, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(key, secret), service, REGION).add_auth(req)
    hdrs = {k: v for k, v in req.headers.items()}
    hdrs["Host"] = server.host
    return target, hdrs


def raw_request(server, method: str, path: str, *, body: bytes = b"", headers: dict | None = None,
                signed: bool = True, timeout: float = 30, **sign_kw) -> RawResponse:
    if signed:
        target, hdrs = sign_request(server, method, path, body=body, headers=headers, **sign_kw)
    else:
        q = sign_kw.get("query")
        target = path + ("?" + urlencode(q) if q else "")
        hdrs = dict(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, target, body=body if (body or method in ("POST", "PUT")) else None, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return RawResponse(r.status, r.msg, data)
    finally:
        conn.close()


def send_large_body(server, method: str, target: str, headers: dict, body: bytes, timeout: float = 30) -> tuple[int | None, bytes, str]:
    """Sends a request with a large body over a raw socket, stopping as soon as the
    server answers (a server may legitimately answer 413 before reading the body).

    Returns (status or None, raw response bytes, note)."""
    deadline = time.monotonic() + timeout
    head = [f"{method} {target} HTTP/1.1"]
    for k, v in headers.items():
        head.append(f"{k}: {v}")
    head.append(f"Content-Length: {len(body)}")
    head.append("Connection: close")
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    note = ""
    resp = b""
    try:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        s.setblocking(False)
        try:
            while sent < len(body) and time.monotonic() < deadline:
                r, w, _ = select.select([s], [s], [], 1.0)
                if r:
                    note = f"server answered after {sent} body bytes"
                    break
                if w:
                    try:
                        sent += s.send(body[sent:sent + 256 * 1024])
                    except BlockingIOError:
                        pass
        except OSError as e:
            note = f"send stopped after {sent} bytes: {e!r}"
        s.setblocking(True)
        while time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                note += " | timed out waiting for the response"
                break
            except OSError as e:
                note += f" | recv error: {e!r}"
                break
            if not chunk:
                break
            resp += chunk
            if b"\r\n\r\n" in resp and _response_complete(resp):
                break
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    status = int(m.group(1)) if m else None
    # Skip an interim "100 Continue".
    while status == 100:
        rest = resp.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in resp else b""
        resp = rest
        m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
        status = int(m.group(1)) if m else None
    return status, resp, note


def _response_complete(resp: bytes) -> bool:
    head, _, rest = resp.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 100") or head.startswith(b"HTTP/1.0 100"):
        return b"\r\n\r\n" in rest and _response_complete(rest)
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if m:
        return len(rest) >= int(m.group(1))
    return False


def rest_json_error_code(status: int, headers, body: bytes) -> str | None:
    """The error code botocore's RestJSONParser would derive."""
    code = None
    try:
        doc = json.loads(body.decode() or "{}")
    except ValueError:
        doc = {}
    if isinstance(doc, dict):
        code = doc.get("__type")
    if code is None:
        code = str(status)
    hdr = headers.get("x-amzn-ErrorType")
    if hdr:
        code = hdr
    elif isinstance(doc, dict) and ("code" in doc or "Code" in doc):
        code = doc.get("code", doc.get("Code"))
    return clean_code(code)


# --------------------------------------------------------------------------------------
# aws CLI
# --------------------------------------------------------------------------------------


class AwsCliError(AssertionError):
    def __init__(self, args, rc, stdout, stderr):
        self.args_ = args
        self.returncode = rc
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"aws {' '.join(args)} exited {rc}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout[:2000]}")


def aws_cli(server, *args: str, env: dict | None = None, principal: Principal | None = None,
            home=None, timeout: float = 180):
    """Runs `aws ARGS --output json` and returns the parsed JSON (None for empty output).

    Without `env`, the CLI gets the server's root keys (or `principal`'s) and the endpoint
    through explicit environment variables, and no user config files."""
    args = list(args)
    if env is None:
        p = principal or server.root()
        home = home or server.workdir
        env = clean_env(
            {
                "AWS_ACCESS_KEY_ID": p.access_key_id,
                "AWS_SECRET_ACCESS_KEY": p.secret_access_key,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": str(Path(home) / "no-such-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(Path(home) / "no-such-aws-credentials"),
            },
            home=home,
        )
        # S3 has its own port.
        args += ["--endpoint-url", server.s3_endpoint if args[0] in ("s3", "s3api") else server.endpoint]
    cmd = aws_cli_command() + args + ["--output", "json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AwsCliError(args, proc.returncode, proc.stdout, proc.stderr)
    out = proc.stdout.strip()
    if not out:
        return None
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        # `aws s3 …` commands print text, not JSON.
        return out
