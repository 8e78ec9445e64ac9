"""The audit trail end to end: every control-plane call becomes one CloudTrail record, which
LookupEvents (boto3, the aws CLI) and `otatrail events` return.

The module runs its own server (three-field config like test_identities.py): two accounts, an
IAM user `alice` in account A, and `sts_min_duration_seconds = 2` so that an expired session can
be seen within the test. References: shared/reference/cloudtrail.md §2 (record fields,
userIdentity) and §5 (LookupEvents), aws-api.md §10.

Records are per account and per region; several tests use a region of their own so that the
exact set of events there is known (LookupEvents itself is recorded too: those records, with
eventSource cloudtrail.amazonaws.com, are left out where a test compares exact lists).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import (
    REGION,
    AccountSpec,
    AwsCliError,
    Principal,
    aws_cli,
    clean_env,
    client_config,
    put_object,
    render_config,
    s3file,
    unique,
)

# --------------------------------------------------------------------------------------
# Accounts and server
# --------------------------------------------------------------------------------------

ACCT_A = AccountSpec(
    id="111122223333",
    root_key="AKIAAUDITROOTA000001",
    root_secret="auditrootA/secret/EXAMPLE/00000000000000",
    users={"alice": ("AKIAAUDITALICE00001", "auditalice/secret/EXAMPLE/0000000000000")},
)
ACCT_B = AccountSpec(
    id="444455556666",
    root_key="AKIAAUDITROOTB000002",
    root_secret="auditrootB/secret/EXAMPLE/22222222222222",
)
ACCOUNTS = [ACCT_A, ACCT_B]
A, B = ACCT_A.id, ACCT_B.id
CONFIG = "sts_min_duration_seconds = 2\n" + render_config(ACCOUNTS)
UNKNOWN_KEY = "AKIAAUDITUNKNOWN0099"

IOT = "iot.amazonaws.com"
IAM = "iam.amazonaws.com"
STS = "sts.amazonaws.com"
CT = "cloudtrail.amazonaws.com"

EVENT_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

# Every secret / session token the tests saw; test_no_secret_in_records_or_logs checks them.
SEEN_SECRETS: set[str] = {ACCT_A.root_secret, ACCT_B.root_secret, ACCT_A.users["alice"][1]}


@pytest.fixture(scope="module")
def srv(server_factory):
    s = server_factory("configured", name="audit", start=False, accounts=ACCOUNTS)
    s.config_path.write_text(CONFIG)
    s.start()
    yield s
    s.stop()


# --------------------------------------------------------------------------------------
# Clients and calls
# --------------------------------------------------------------------------------------


def root(account: AccountSpec = ACCT_A) -> Principal:
    return Principal(account.root_key, account.root_secret, account.id)


def alice() -> Principal:
    key, secret = ACCT_A.users["alice"]
    return Principal(key, secret, A, "alice")


@dataclass
class Client:
    """A boto3 client that remembers the User-Agent of the last request it sent."""

    raw: object
    last_ua: str | None = None

    def __post_init__(self):
        self.raw.meta.events.register("before-send", self._capture)

    def _capture(self, request, **_):
        ua = request.headers.get("User-Agent")
        self.last_ua = ua.decode() if isinstance(ua, bytes) else ua


def client(service: str, server, key: str, secret: str, token: str | None = None, *,
           region: str = REGION, validate: bool = True) -> Client:
    raw = boto3.session.Session().client(
        service,
        region_name=region,
        endpoint_url=server.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=client_config(parameter_validation=validate, user_agent_extra="otatrail-audit-tests/1.0"),
    )
    return Client(raw)


def pclient(service: str, server, p: Principal, **kw) -> Client:
    return client(service, server, p.access_key_id, p.secret_access_key, **kw)


def cclient(service: str, server, creds: dict, **kw) -> Client:
    return client(service, server, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], **kw)


@dataclass
class Call:
    op: str
    ok: bool
    resp: dict
    request_id: str
    user_agent: str
    status: int
    code: str | None = None
    message: str | None = None


def call(c: Client, op: str, **kw) -> Call:
    """Runs one operation (snake_case name); failures are returned, not raised."""
    try:
        r = getattr(c.raw, op)(**kw)
        ok, code, msg = True, None, None
    except ClientError as e:
        r = e.response
        ok, code, msg = False, r["Error"].get("Code"), r["Error"].get("Message")
    rid = r["ResponseMetadata"].get("RequestId")
    assert rid, f"{op}: no request id in {r['ResponseMetadata']}"
    return Call(op, ok, r, rid, c.last_ua, r["ResponseMetadata"]["HTTPStatusCode"], code, msg)


def ok(c: Client, op: str, **kw) -> Call:
    res = call(c, op, **kw)
    assert res.ok, f"{op} failed: {res.code} {res.message}"
    return res


def failed(c: Client, op: str, code: str, status: int, **kw) -> Call:
    res = call(c, op, **kw)
    assert not res.ok, f"{op} unexpectedly succeeded"
    assert (res.code, res.status) == (code, status), f"{op}: expected {code}/{status}, got {res.code}/{res.status}: {res.message}"
    return res


def remember_creds(creds: dict) -> dict:
    SEEN_SECRETS.add(creds["SecretAccessKey"])
    SEEN_SECRETS.add(creds["SessionToken"])
    return creds


def trust_root(account: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}],
    })


def firmware_files(server, file_id: int = 0) -> list[dict]:
    key = f"images/{uuid.uuid4().hex[:10]}.bin"
    put_object(server, "audit-bucket", key)
    return [s3file(file_id, "audit-bucket", key)]


def create_stream(c: Client, server, account: str, sid: str | None = None, description: str = "audit stream") -> Call:
    sid = sid or unique("aud")
    return ok(c, "create_stream", streamId=sid, files=firmware_files(server),
              roleArn=f"arn:aws:iam::{account}:role/ota", description=description)


# --------------------------------------------------------------------------------------
# LookupEvents
# --------------------------------------------------------------------------------------


def ct(server, p: Principal, region: str = REGION, validate: bool = True):
    return pclient("cloudtrail", server, p, region=region, validate=validate).raw


def lookup_all(server, p: Principal, region: str = REGION, page_size: int | None = None, **kw) -> list[dict]:
    """Every event of the lookup, through boto3's paginator."""
    pag = ct(server, p, region).get_paginator("lookup_events")
    cfg = {"PageSize": page_size} if page_size else {}
    out = []
    for page in pag.paginate(PaginationConfig=cfg, **kw):
        out += page["Events"]
    return out


def attr(key: str, value: str) -> dict:
    return {"LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}]}


def record(event: dict) -> dict:
    return json.loads(event["CloudTrailEvent"])


def rids(events: list[dict], *, skip_lookups: bool = True) -> list[str]:
    """requestIDs of the events (in order), without the LookupEvents records."""
    out = []
    for e in events:
        r = record(e)
        if skip_lookups and r["eventSource"] == CT:
            continue
        out.append(r["requestID"])
    return out


def by_request_id(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for e in events:
        out[record(e)["requestID"]].append(e)
    return out


def event_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def lookup_error(server, p: Principal, code: str, region: str = REGION, **kw) -> ClientError:
    with pytest.raises(ClientError) as e:
        ct(server, p, region, validate=False).lookup_events(**kw)
    got = (e.value.response["Error"].get("Code"), e.value.response["ResponseMetadata"]["HTTPStatusCode"])
    assert got == (code, 400), f"LookupEvents {kw}: expected {code}/400, got {got}: {e.value.response['Error']}"
    return e.value


# --------------------------------------------------------------------------------------
# Record checks
# --------------------------------------------------------------------------------------


def root_identity(account: AccountSpec = ACCT_A) -> dict:
    return {"type": "Root", "principalId": account.id, "arn": f"arn:aws:iam::{account.id}:root",
            "accountId": account.id, "accessKeyId": account.root_key}


def user_identity(name: str, user_id: str, key: str, account: str = A) -> dict:
    return {"type": "IAMUser", "principalId": user_id, "arn": f"arn:aws:iam::{account}:user/{name}",
            "accountId": account, "accessKeyId": key, "userName": name}


def check_common(rec: dict, c: Call, *, source: str, name: str, read_only: bool, region: str = REGION,
                 account: str = A) -> None:
    where = f"record of {name} ({c.request_id})"
    assert rec["eventVersion"] == "1.11", where
    assert EVENT_TIME_RE.fullmatch(rec["eventTime"]), f"{where}: eventTime {rec['eventTime']!r}"
    assert abs((event_time(rec["eventTime"]) - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 300, where
    assert rec["eventSource"] == source, where
    assert rec["eventName"] == name, where
    assert rec["awsRegion"] == region, where
    assert rec["sourceIPAddress"] == "127.0.0.1", where
    assert rec["userAgent"] == c.user_agent, f"{where}: userAgent {rec.get('userAgent')!r} != sent {c.user_agent!r}"
    assert rec["requestID"] == c.request_id, where
    assert str(uuid.UUID(rec["eventID"])) == rec["eventID"].lower(), where
    assert rec["readOnly"] is read_only, f"{where}: readOnly {rec.get('readOnly')!r}"
    assert rec["eventType"] == "AwsApiCall", where
    assert rec["managementEvent"] is True, where
    assert rec["eventCategory"] == "Management", where
    assert rec["recipientAccountId"] == account, where
    assert "requestParameters" in rec and "responseElements" in rec, f"{where}: {sorted(rec)}"
    if source == IAM:
        assert rec.get("apiVersion") == "2010-05-08", where
    if c.ok:
        assert "errorCode" not in rec and "errorMessage" not in rec, f"{where}: {rec.get('errorCode')}"
    else:
        assert rec.get("errorCode") == c.code, f"{where}: errorCode {rec.get('errorCode')!r}, response said {c.code!r}"
        assert rec.get("errorMessage"), f"{where}: no errorMessage"
        assert "Canonical String" not in rec["errorMessage"], f"{where}: {rec['errorMessage']!r}"
        assert rec["responseElements"] is None, f"{where}: responseElements of a failed call {rec['responseElements']!r}"


def check_event_summary(ev: dict, rec: dict, username: str | None) -> None:
    """The LookupEvents fields of an event agree with its record."""
    where = f"event {rec['eventName']} ({rec['requestID']})"
    assert ev["EventId"] == rec["eventID"], where
    assert ev["EventName"] == rec["eventName"], where
    assert ev["EventSource"] == rec["eventSource"], where
    assert ev["ReadOnly"] == ("true" if rec["readOnly"] else "false"), f"{where}: ReadOnly {ev.get('ReadOnly')!r}"
    assert ev.get("AccessKeyId") == rec["userIdentity"].get("accessKeyId"), where
    assert ev["EventTime"] == event_time(rec["eventTime"]), f"{where}: {ev['EventTime']} vs {rec['eventTime']}"
    assert ev.get("Username") == username, f"{where}: Username {ev.get('Username')!r}, expected {username!r}"
    want = [{"ResourceType": r["type"], "ResourceName": r["ARN"]} for r in rec.get("resources") or []]
    assert ev.get("Resources", []) == want, where


def resource(arn: str, rtype: str, account: str = A) -> dict:
    return {"ARN": arn, "accountId": account, "type": rtype}


# ======================================================================================
# 1. A scripted mix of calls, each checked against its record
# ======================================================================================


@dataclass
class Script:
    calls: dict[str, Call] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def script(srv) -> Script:
    s = Script()
    C, F = s.calls, s.facts
    iam = pclient("iam", srv, root())
    iot = pclient("iot", srv, root())
    sts = pclient("sts", srv, root())
    iot_nv = pclient("iot", srv, root(), validate=False)

    # -- root: IAM ---------------------------------------------------------------------
    F["user"] = user = unique("auduser")
    C["CreateUser"] = ok(iam, "create_user", UserName=user)
    C["CreateAccessKey"] = ok(iam, "create_access_key", UserName=user)
    key = C["CreateAccessKey"].resp["AccessKey"]
    SEEN_SECRETS.add(key["SecretAccessKey"])
    C["GetUser"] = ok(iam, "get_user", UserName=user)
    C["GetUser.missing"] = failed(iam, "get_user", "NoSuchEntity", 404, UserName="no-such-audit-user")
    C["ListAccessKeys"] = ok(iam, "list_access_keys", UserName=user)
    C["UpdateAccessKey"] = ok(iam, "update_access_key", UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    F["role"] = role = unique("audrole")
    F["trust"] = trust = trust_root(A)
    C["CreateRole"] = ok(iam, "create_role", RoleName=role, AssumeRolePolicyDocument=trust)
    F["role_arn"] = role_arn = C["CreateRole"].resp["Role"]["Arn"]
    F["role_id"] = C["CreateRole"].resp["Role"]["RoleId"]
    C["GetRole"] = ok(iam, "get_role", RoleName=role)
    C["TagUser"] = ok(iam, "tag_user", UserName=user, Tags=[{"Key": "team", "Value": "ota"}])
    C["ListUserTags"] = ok(iam, "list_user_tags", UserName=user)
    C["DeleteAccessKey"] = ok(iam, "delete_access_key", UserName=user, AccessKeyId=key["AccessKeyId"])

    # -- root: IoT ---------------------------------------------------------------------
    F["sid"] = sid = unique("audstream")
    F["files"] = files = firmware_files(srv)
    C["CreateStream"] = ok(iot, "create_stream", streamId=sid, files=files,
                           roleArn=f"arn:aws:iam::{A}:role/ota", description="audited")
    C["DescribeStream"] = ok(iot, "describe_stream", streamId=sid)
    C["DescribeStream.missing"] = failed(iot, "describe_stream", "ResourceNotFoundException", 404,
                                         streamId="no-such-audit-stream")
    C["CreateStream.fileId256"] = failed(iot_nv, "create_stream", "InvalidRequestException", 400,
                                         streamId=unique("bad"), files=[s3file(256, "audit-bucket", "x.bin")],
                                         roleArn=f"arn:aws:iam::{A}:role/ota")
    C["ListStreams"] = ok(iot, "list_streams", maxResults=5, ascendingOrder=True)
    C["UpdateStream"] = ok(iot, "update_stream", streamId=sid, description="audited v2")
    F["sid2"] = sid2 = unique("audstream")
    create_stream(iot, srv, A, sid2)
    C["DeleteStream"] = ok(iot, "delete_stream", streamId=sid2)

    # -- root: STS ---------------------------------------------------------------------
    C["GetCallerIdentity.root"] = ok(sts, "get_caller_identity")
    C["AssumeRole"] = ok(sts, "assume_role", RoleArn=role_arn, RoleSessionName="audit-sess",
                         DurationSeconds=900, SourceIdentity="audit-src")
    F["role_creds"] = role_creds = remember_creds(C["AssumeRole"].resp["Credentials"])

    # -- alice (IAM user) --------------------------------------------------------------
    a_sts = pclient("sts", srv, alice())
    C["GetCallerIdentity.alice"] = ok(a_sts, "get_caller_identity")
    F["alice_id"] = C["GetCallerIdentity.alice"].resp["UserId"]
    C["ListStreams.alice"] = ok(pclient("iot", srv, alice()), "list_streams")
    C["GetUser.alice"] = ok(pclient("iam", srv, alice()), "get_user")
    C["GetFederationToken"] = ok(a_sts, "get_federation_token", Name="audfed", DurationSeconds=900)
    F["fed_creds"] = fed_creds = remember_creds(C["GetFederationToken"].resp["Credentials"])
    C["GetSessionToken"] = ok(a_sts, "get_session_token", DurationSeconds=900)
    F["session_creds"] = session_creds = remember_creds(C["GetSessionToken"].resp["Credentials"])

    # -- assumed role ------------------------------------------------------------------
    C["GetCallerIdentity.role"] = ok(cclient("sts", srv, role_creds), "get_caller_identity")
    F["sid3"] = sid3 = unique("audrole")
    C["CreateStream.role"] = create_stream(cclient("iot", srv, role_creds), srv, A, sid3, "by a role")
    C["DescribeStream.role.missing"] = failed(cclient("iot", srv, role_creds), "describe_stream",
                                              "ResourceNotFoundException", 404, streamId="no-such-role-stream")

    # -- federated user and session token ----------------------------------------------
    C["GetCallerIdentity.fed"] = ok(cclient("sts", srv, fed_creds), "get_caller_identity")
    C["ListStreams.fed"] = ok(cclient("iot", srv, fed_creds), "list_streams")
    C["GetCallerIdentity.session"] = ok(cclient("sts", srv, session_creds), "get_caller_identity")

    # -- root: cleanup ------------------------------------------------------------------
    C["DeleteRole"] = ok(iam, "delete_role", RoleName=role)
    C["DeleteUser"] = ok(iam, "delete_user", UserName=user)
    return s


@pytest.fixture(scope="module")
def history_a(srv, script) -> list[dict]:
    """Account A's us-east-1 history right after the script."""
    return lookup_all(srv, root())


def test_each_call_recorded_exactly_once(srv, script, history_a):
    found = by_request_id(history_a)
    missing = [k for k, c in script.calls.items() if c.request_id not in found]
    assert not missing, f"no record for {missing}"
    twice = {k: len(found[c.request_id]) for k, c in script.calls.items() if len(found[c.request_id]) != 1}
    assert not twice, f"calls recorded more than once: {twice}"
    ids = [record(e)["eventID"] for e in history_a]
    assert len(ids) == len(set(ids)), "an eventID appears twice"
    # Newest first.
    times = [e["EventTime"] for e in history_a]
    assert times == sorted(times, reverse=True)
    # The script's calls came one after another: their records come back in reverse order.
    order = [c.request_id for c in script.calls.values()]
    got = [r for r in rids(history_a) if r in set(order)]
    assert got == list(reversed(order))
    # Account B sees none of them.
    b = {record(e)["requestID"] for e in lookup_all(srv, root(ACCT_B))}
    assert not b & set(order), "account B sees account A's events"


def _rec(history, c: Call) -> tuple[dict, dict]:
    [ev] = by_request_id(history)[c.request_id]
    return ev, record(ev)


def test_root_iam_records(srv, script, history_a):
    C, F = script.calls, script.facts
    user = F["user"]
    user_arn = f"arn:aws:iam::{A}:user/{user}"

    ev, rec = _rec(history_a, C["CreateUser"])
    check_common(rec, C["CreateUser"], source=IAM, name="CreateUser", read_only=False)
    assert rec["userIdentity"] == root_identity()
    check_event_summary(ev, rec, "root")
    assert rec["requestParameters"] == {"userName": user}
    u = C["CreateUser"].resp["User"]
    re_user = rec["responseElements"]["user"]
    assert set(rec["responseElements"]) == {"user"}
    assert set(re_user) == {"path", "userName", "userId", "arn", "createDate"}, re_user
    assert (re_user["path"], re_user["userName"], re_user["userId"], re_user["arn"]) == ("/", user, u["UserId"], user_arn)
    assert abs((parse_iso(re_user["createDate"]) - u["CreateDate"]).total_seconds()) < 2
    assert rec["resources"] == [resource(user_arn, "AWS::IAM::User")]

    c = C["CreateAccessKey"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="CreateAccessKey", read_only=False)
    k = c.resp["AccessKey"]
    assert rec["requestParameters"] == {"userName": user}
    ak = rec["responseElements"]["accessKey"]
    assert set(rec["responseElements"]) == {"accessKey"}
    assert set(ak) == {"userName", "accessKeyId", "status", "createDate"}, ak
    assert (ak["userName"], ak["accessKeyId"], ak["status"]) == (user, k["AccessKeyId"], "Active")
    assert resource(k["AccessKeyId"], "AWS::IAM::AccessKey") in rec["resources"], rec["resources"]
    assert k["SecretAccessKey"] not in ev["CloudTrailEvent"]
    check_event_summary(ev, rec, "root")

    c = C["GetUser"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="GetUser", read_only=True)
    assert rec["requestParameters"] == {"userName": user}
    assert rec["responseElements"] is None

    c = C["GetUser.missing"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="GetUser", read_only=True)
    assert rec["errorCode"] == "NoSuchEntity"
    assert rec["requestParameters"] == {"userName": "no-such-audit-user"}

    c = C["ListAccessKeys"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="ListAccessKeys", read_only=True)
    assert rec["requestParameters"] == {"userName": user}
    assert rec["responseElements"] is None

    c = C["UpdateAccessKey"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="UpdateAccessKey", read_only=False)
    assert rec["requestParameters"] == {"userName": user, "accessKeyId": k["AccessKeyId"], "status": "Inactive"}
    assert resource(k["AccessKeyId"], "AWS::IAM::AccessKey") in rec["resources"], rec["resources"]

    c = C["DeleteAccessKey"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="DeleteAccessKey", read_only=False)
    assert rec["requestParameters"] == {"userName": user, "accessKeyId": k["AccessKeyId"]}
    assert resource(k["AccessKeyId"], "AWS::IAM::AccessKey") in rec["resources"], rec["resources"]

    c = C["CreateRole"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="CreateRole", read_only=False)
    assert rec["requestParameters"] == {"roleName": F["role"], "assumeRolePolicyDocument": F["trust"]}
    assert rec["responseElements"] is not None
    assert rec["resources"] == [resource(F["role_arn"], "AWS::IAM::Role")]

    c = C["TagUser"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IAM, name="TagUser", read_only=False)
    assert rec["requestParameters"]["userName"] == user
    assert rec["resources"] == [resource(user_arn, "AWS::IAM::User")]

    for name, rtype, arn in (("DeleteRole", "AWS::IAM::Role", F["role_arn"]), ("DeleteUser", "AWS::IAM::User", user_arn)):
        c = C[name]
        ev, rec = _rec(history_a, c)
        check_common(rec, c, source=IAM, name=name, read_only=False)
        assert rec["resources"] == [resource(arn, rtype)]
        assert rec["userIdentity"] == root_identity()


def test_iam_read_calls_name_their_resource(srv, script, history_a):
    """GetUser, ListUserTags, ListAccessKeys and GetRole are IAM user/role calls: their records
    name the user or role in `resources`, as DescribeStream names its stream."""
    C, F = script.calls, script.facts
    user_arn = f"arn:aws:iam::{A}:user/{F['user']}"
    got = {}
    for name, want in (("GetUser", [resource(user_arn, "AWS::IAM::User")]),
                       ("ListUserTags", [resource(user_arn, "AWS::IAM::User")]),
                       ("ListAccessKeys", [resource(user_arn, "AWS::IAM::User")]),
                       ("GetRole", [resource(F["role_arn"], "AWS::IAM::Role")])):
        ev, rec = _rec(history_a, C[name])
        check_common(rec, C[name], source=IAM, name=name.split(".")[0], read_only=True)
        check_event_summary(ev, rec, "root")
        if rec.get("resources") != want:
            got[name] = rec.get("resources")
    assert not got, f"read-only IAM calls without their resource: {got}"


def test_root_iot_records(srv, script, history_a):
    C, F = script.calls, script.facts
    sid = F["sid"]
    arn = C["CreateStream"].resp["streamArn"]
    assert arn == f"arn:aws:iot:{REGION}:{A}:stream/{sid}"

    c = C["CreateStream"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IOT, name="CreateStream", read_only=False)
    assert rec["userIdentity"] == root_identity()
    check_event_summary(ev, rec, "root")
    assert rec["requestParameters"] == {"streamId": sid, "files": F["files"], "roleArn": f"arn:aws:iam::{A}:role/ota",
                                        "description": "audited"}
    assert rec["responseElements"] == {"streamId": sid, "streamArn": arn, "description": "audited", "streamVersion": 1}
    assert rec["resources"] == [resource(arn, "AWS::IoT::Stream")]

    c = C["DescribeStream"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IOT, name="DescribeStream", read_only=True)
    check_event_summary(ev, rec, "root")
    assert rec["requestParameters"] == {"streamId": sid}
    assert rec["responseElements"] is None
    assert rec["resources"] == [resource(arn, "AWS::IoT::Stream")]

    c = C["DescribeStream.missing"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IOT, name="DescribeStream", read_only=True)
    assert rec["errorCode"] == "ResourceNotFoundException"
    assert rec["requestParameters"] == {"streamId": "no-such-audit-stream"}

    c = C["CreateStream.fileId256"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IOT, name="CreateStream", read_only=False)
    assert rec["errorCode"] == "InvalidRequestException"
    assert rec["requestParameters"]["files"] == [s3file(256, "audit-bucket", "x.bin")]

    c = C["ListStreams"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IOT, name="ListStreams", read_only=True)
    check_event_summary(ev, rec, "root")
    assert rec["requestParameters"] == {"maxResults": 5, "ascendingOrder": True}
    assert rec["responseElements"] is None

    c = C["UpdateStream"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IOT, name="UpdateStream", read_only=False)
    assert rec["requestParameters"] == {"streamId": sid, "description": "audited v2"}
    assert rec["responseElements"] == {"streamId": sid, "streamArn": arn, "description": "audited v2", "streamVersion": 2}
    assert rec["resources"] == [resource(arn, "AWS::IoT::Stream")]

    c = C["DeleteStream"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=IOT, name="DeleteStream", read_only=False)
    assert rec["requestParameters"] == {"streamId": F["sid2"]}
    assert rec["resources"] == [resource(f"arn:aws:iot:{REGION}:{A}:stream/{F['sid2']}", "AWS::IoT::Stream")]


def _check_no_secret_in_response_elements(rec: dict, creds: dict) -> None:
    cr = rec["responseElements"]["credentials"]
    assert cr["accessKeyId"] == creds["AccessKeyId"]
    assert abs((parse_iso(cr["expiration"]) - creds["Expiration"]).total_seconds()) < 2, cr["expiration"]
    assert "secretAccessKey" not in cr and "sessionToken" not in cr, cr
    text = json.dumps(rec)
    assert creds["SecretAccessKey"] not in text and creds["SessionToken"] not in text


def test_sts_records(srv, script, history_a):
    C, F = script.calls, script.facts
    alice_key = alice().access_key_id

    c = C["GetCallerIdentity.root"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=STS, name="GetCallerIdentity", read_only=True)
    check_event_summary(ev, rec, "root")
    assert rec["userIdentity"] == root_identity()
    assert rec["requestParameters"] is None
    assert rec["responseElements"] is None

    c = C["AssumeRole"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=STS, name="AssumeRole", read_only=True)
    check_event_summary(ev, rec, "root")
    assert rec["requestParameters"] == {"roleArn": F["role_arn"], "roleSessionName": "audit-sess",
                                        "durationSeconds": 900, "sourceIdentity": "audit-src"}
    _check_no_secret_in_response_elements(rec, F["role_creds"])
    aru = c.resp["AssumedRoleUser"]
    assert rec["responseElements"]["assumedRoleUser"] == {"assumedRoleId": aru["AssumedRoleId"], "arn": aru["Arn"]}

    c = C["GetCallerIdentity.alice"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=STS, name="GetCallerIdentity", read_only=True)
    assert rec["userIdentity"] == user_identity("alice", F["alice_id"], alice_key)
    assert F["alice_id"].startswith("AIDA")
    check_event_summary(ev, rec, "alice")

    for name in ("ListStreams.alice", "GetUser.alice"):
        c = C[name]
        ev, rec = _rec(history_a, c)
        assert rec["userIdentity"] == user_identity("alice", F["alice_id"], alice_key), name
        check_event_summary(ev, rec, "alice")
    assert _rec(history_a, C["GetUser.alice"])[1]["requestParameters"] is None

    c = C["GetFederationToken"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=STS, name="GetFederationToken", read_only=True)
    assert rec["requestParameters"] == {"name": "audfed", "durationSeconds": 900}
    _check_no_secret_in_response_elements(rec, F["fed_creds"])
    assert rec["responseElements"]["federatedUser"] == {"federatedUserId": f"{A}:audfed",
                                                        "arn": f"arn:aws:sts::{A}:federated-user/audfed"}
    check_event_summary(ev, rec, "alice")

    c = C["GetSessionToken"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=STS, name="GetSessionToken", read_only=True)
    assert rec["requestParameters"] == {"durationSeconds": 900}
    _check_no_secret_in_response_elements(rec, F["session_creds"])


def test_assumed_role_identity(srv, script, history_a):
    C, F = script.calls, script.facts
    role, role_id, role_arn = F["role"], F["role_id"], F["role_arn"]
    creds = F["role_creds"]
    assert role_id.startswith("AROA"), role_id
    for name, source, ev_name in (("GetCallerIdentity.role", STS, "GetCallerIdentity"),
                                  ("CreateStream.role", IOT, "CreateStream"),
                                  ("DescribeStream.role.missing", IOT, "DescribeStream")):
        c = C[name]
        ev, rec = _rec(history_a, c)
        check_common(rec, c, source=source, name=ev_name, read_only=ev_name != "CreateStream")
        ui = rec["userIdentity"]
        assert set(ui) == {"type", "principalId", "arn", "accountId", "accessKeyId", "sessionContext"}, ui
        assert ui["type"] == "AssumedRole"
        assert ui["principalId"] == f"{role_id}:audit-sess"
        assert ui["arn"] == f"arn:aws:sts::{A}:assumed-role/{role}/audit-sess"
        assert ui["accountId"] == A
        assert ui["accessKeyId"] == creds["AccessKeyId"] and creds["AccessKeyId"].startswith("ASIA")
        sc = ui["sessionContext"]
        assert sc["sessionIssuer"] == {"type": "Role", "principalId": role_id, "arn": role_arn,
                                       "accountId": A, "userName": role}
        assert sc["webIdFederationData"] == {}
        assert set(sc["attributes"]) == {"creationDate", "mfaAuthenticated"}, sc["attributes"]
        assert sc["attributes"]["mfaAuthenticated"] == "false"
        assert EVENT_TIME_RE.fullmatch(sc["attributes"]["creationDate"]), sc["attributes"]
        assert sc["sourceIdentity"] == "audit-src"
        check_event_summary(ev, rec, "audit-sess")
    rec = _rec(history_a, C["CreateStream.role"])[1]
    assert rec["responseElements"]["streamId"] == F["sid3"]


def test_federated_and_session_token_identity(srv, script, history_a):
    C, F = script.calls, script.facts
    fed = F["fed_creds"]
    for name, source, ev_name in (("GetCallerIdentity.fed", STS, "GetCallerIdentity"), ("ListStreams.fed", IOT, "ListStreams")):
        c = C[name]
        ev, rec = _rec(history_a, c)
        check_common(rec, c, source=source, name=ev_name, read_only=True)
        ui = rec["userIdentity"]
        assert ui["type"] == "FederatedUser"
        assert ui["principalId"] == f"{A}:audfed"
        assert ui["arn"] == f"arn:aws:sts::{A}:federated-user/audfed"
        assert ui["accountId"] == A
        assert ui["accessKeyId"] == fed["AccessKeyId"]
        assert ui["userName"] == "audfed"
        assert ui["sessionContext"]["sessionIssuer"] == {
            "type": "IAMUser", "principalId": F["alice_id"], "arn": f"arn:aws:iam::{A}:user/alice",
            "accountId": A, "userName": "alice"}
        assert ui["sessionContext"]["attributes"]["mfaAuthenticated"] == "false"
        check_event_summary(ev, rec, "audfed")

    c = C["GetCallerIdentity.session"]
    ev, rec = _rec(history_a, c)
    check_common(rec, c, source=STS, name="GetCallerIdentity", read_only=True)
    ui = rec["userIdentity"]
    assert (ui["type"], ui["principalId"], ui["arn"], ui["accountId"], ui["accessKeyId"], ui["userName"]) == (
        "IAMUser", F["alice_id"], f"arn:aws:iam::{A}:user/alice", A, F["session_creds"]["AccessKeyId"], "alice")
    check_event_summary(ev, rec, "alice")


def test_federated_user_of_root(srv):
    r = ok(pclient("sts", srv, root()), "get_federation_token", Name="rootfed", DurationSeconds=900)
    creds = remember_creds(r.resp["Credentials"])
    c = ok(cclient("sts", srv, creds), "get_caller_identity")
    ev, rec = _rec(lookup_all(srv, root(), **attr("AccessKeyId", creds["AccessKeyId"])), c)
    ui = rec["userIdentity"]
    assert (ui["type"], ui["principalId"], ui["arn"], ui["userName"]) == (
        "FederatedUser", f"{A}:rootfed", f"arn:aws:sts::{A}:federated-user/rootfed", "rootfed")
    issuer = dict(ui["sessionContext"]["sessionIssuer"])
    issuer.pop("userName", None)  # no alias: left out or the account's name
    assert issuer == {"type": "Root", "principalId": A, "arn": f"arn:aws:iam::{A}:root", "accountId": A}, ui
    check_event_summary(ev, rec, "rootfed")


def test_lookup_events_is_recorded(srv):
    c = ok(pclient("cloudtrail", srv, root()), "lookup_events", MaxResults=1)
    ev, rec = _rec(lookup_all(srv, root(), **attr("EventSource", CT)), c)
    check_common(rec, c, source=CT, name="LookupEvents", read_only=True)
    assert rec["responseElements"] is None
    check_event_summary(ev, rec, "root")


# ======================================================================================
# 2. No secret in any record nor in the logs
# ======================================================================================


def test_no_secret_in_records_or_logs(srv, script):
    iam = pclient("iam", srv, root())
    name = unique("secretuser")
    iam.raw.create_user(UserName=name)
    key = iam.raw.create_access_key(UserName=name)["AccessKey"]
    SEEN_SECRETS.add(key["SecretAccessKey"])
    # The new key is used, and also refused with a wrong secret (an Unknown-identity record).
    ok(client("sts", srv, key["AccessKeyId"], key["SecretAccessKey"]), "get_caller_identity")
    failed(client("sts", srv, key["AccessKeyId"], key["SecretAccessKey"][::-1]), "get_caller_identity",
           "SignatureDoesNotMatch", 403)
    role = unique("secretrole")
    role_arn = iam.raw.create_role(RoleName=role, AssumeRolePolicyDocument=trust_root(A))["Role"]["Arn"]
    assumed = remember_creds(pclient("sts", srv, root()).raw.assume_role(RoleArn=role_arn, RoleSessionName="secret-sess")["Credentials"])
    session = remember_creds(pclient("sts", srv, alice()).raw.get_session_token()["Credentials"])
    fed = remember_creds(pclient("sts", srv, alice()).raw.get_federation_token(Name="secfed")["Credentials"])
    for creds in (assumed, session, fed):
        ok(cclient("iot", srv, creds), "list_streams")
        # Refused with an altered token: the record must not hold either token.
        failed(client("iot", srv, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"] + "x"),
               "list_streams", "UnrecognizedClientException", 403)

    assert len(SEEN_SECRETS) >= 3 + 1 + 3 * 2
    texts = []
    for p in (root(ACCT_A), root(ACCT_B)):
        for region in (REGION, "eu-west-1", "ap-northeast-1", "sa-east-1"):
            texts += [e["CloudTrailEvent"] for e in lookup_all(srv, p, region)]
    assert len(texts) > 40
    everything = "\n".join(texts)
    leaked = [s for s in SEEN_SECRETS if s in everything]
    assert not leaked, f"{len(leaked)} secret(s)/session token(s) in CloudTrail records: " + ", ".join(s[:6] + "…" for s in leaked)

    # otatrail events prints the same records.
    out = events_cli(srv, "--account", A, "--output", "json", "--max", "100000")
    assert out.returncode == 0, out.stderr
    leaked = [s for s in SEEN_SECRETS if s in out.stdout]
    assert not leaked, "secret in `otatrail events` output"

    logs = srv.all_logs()
    assert logs.strip(), "the server wrote no log at all"
    leaked = [s for s in SEEN_SECRETS if s in logs]
    assert not leaked, f"{len(leaked)} secret(s)/session token(s) in the server logs: " + ", ".join(s[:6] + "…" for s in leaked)


# ======================================================================================
# 3. Failed authentication
# ======================================================================================


def _check_unknown(history: list[dict], c: Call, *, key: str, source: str, name: str, account: str = A) -> None:
    found = by_request_id(history).get(c.request_id, [])
    assert len(found) == 1, f"{name} refused with {c.code}: {len(found)} record(s) for request {c.request_id}"
    ev, rec = found[0], record(found[0])
    check_common(rec, c, source=source, name=name, read_only=rec["readOnly"], account=account)
    assert rec["readOnly"] is (name != "CreateStream")
    assert rec["userIdentity"] == {"type": "Unknown", "principalId": "", "accountId": account, "accessKeyId": key}
    assert rec["errorCode"] == c.code
    assert "Canonical String" not in rec["errorMessage"] and "String-to-Sign" not in rec["errorMessage"], rec["errorMessage"]
    assert ev.get("AccessKeyId") == key


def test_failed_authentication_records(srv):
    iam = pclient("iam", srv, root())
    # An expiring session first (2 s), so that the wait overlaps the other checks.
    role = unique("authrole")
    role_arn = iam.raw.create_role(RoleName=role, AssumeRolePolicyDocument=trust_root(A))["Role"]["Arn"]
    sts_nv = pclient("sts", srv, root(), validate=False)
    short = remember_creds(sts_nv.raw.assume_role(RoleArn=role_arn, RoleSessionName="short", DurationSeconds=2)["Credentials"])
    creds = remember_creds(sts_nv.raw.assume_role(RoleArn=role_arn, RoleSessionName="long")["Credentials"])

    calls: list[tuple[Call, str, str, str]] = []  # (call, key, source, name)
    a = alice()
    # Wrong secret.
    calls.append((failed(client("iot", srv, a.access_key_id, a.secret_access_key + "x"), "list_streams",
                         "InvalidSignatureException", 403), a.access_key_id, IOT, "ListStreams"))
    calls.append((failed(client("sts", srv, a.access_key_id, a.secret_access_key + "x"), "get_caller_identity",
                         "SignatureDoesNotMatch", 403), a.access_key_id, STS, "GetCallerIdentity"))
    calls.append((failed(client("iot", srv, ACCT_A.root_key, "wrong" + ACCT_A.root_secret), "create_stream",
                         "InvalidSignatureException", 403, streamId=unique("x"), files=firmware_files(srv),
                         roleArn=f"arn:aws:iam::{A}:role/ota"), ACCT_A.root_key, IOT, "CreateStream"))
    # Inactive key.
    user = unique("inactive")
    iam.raw.create_user(UserName=user)
    key = iam.raw.create_access_key(UserName=user)["AccessKey"]
    SEEN_SECRETS.add(key["SecretAccessKey"])
    iam.raw.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    calls.append((failed(client("iot", srv, key["AccessKeyId"], key["SecretAccessKey"]), "list_streams",
                         "UnrecognizedClientException", 403), key["AccessKeyId"], IOT, "ListStreams"))
    calls.append((failed(client("sts", srv, key["AccessKeyId"], key["SecretAccessKey"]), "get_caller_identity",
                         "InvalidClientTokenId", 403), key["AccessKeyId"], STS, "GetCallerIdentity"))
    # Session token altered, missing.
    kid = creds["AccessKeyId"]
    calls.append((failed(client("iot", srv, kid, creds["SecretAccessKey"], creds["SessionToken"] + "A"), "describe_stream",
                         "UnrecognizedClientException", 403, streamId="whatever"), kid, IOT, "DescribeStream"))
    calls.append((failed(client("sts", srv, kid, creds["SecretAccessKey"]), "get_caller_identity",
                         "InvalidClientTokenId", 403), kid, STS, "GetCallerIdentity"))
    # Expired.
    wait = (short["Expiration"] - dt.datetime.now(dt.timezone.utc)).total_seconds() + 1.2
    time.sleep(max(wait, 0))
    calls.append((failed(cclient("iot", srv, short), "list_streams", "ExpiredTokenException", 403),
                  short["AccessKeyId"], IOT, "ListStreams"))
    calls.append((failed(cclient("sts", srv, short), "get_caller_identity", "ExpiredToken", 403),
                  short["AccessKeyId"], STS, "GetCallerIdentity"))

    # An unknown key: refused and recorded nowhere.
    unknown = [failed(client("iot", srv, UNKNOWN_KEY, "x" * 40), "list_streams", "UnrecognizedClientException", 403),
               failed(client("sts", srv, UNKNOWN_KEY, "x" * 40), "get_caller_identity", "InvalidClientTokenId", 403)]

    history = lookup_all(srv, root())
    for c, k, source, name in calls:
        _check_unknown(history, c, key=k, source=source, name=name)
        # And found by its access key id.
        assert c.request_id in rids(lookup_all(srv, root(), **attr("AccessKeyId", k))), f"{name} by AccessKeyId {k}"
    # The unknown-identity records are read back with Username absent (there is no user).
    for c, *_ in calls:
        [ev] = by_request_id(history)[c.request_id]
        assert ev.get("Username") in (None, ""), ev.get("Username")

    unknown_rids = {c.request_id for c in unknown}
    for p in (root(ACCT_A), root(ACCT_B)):
        assert not unknown_rids & {record(e)["requestID"] for e in lookup_all(srv, p)}, f"unknown key recorded in {p.account_id}"
        assert lookup_all(srv, p, **attr("AccessKeyId", UNKNOWN_KEY)) == []
    for acct in (A, B):
        out = events_cli(srv, "--account", acct, "--output", "json", "--max", "100000")
        assert out.returncode == 0, out.stderr
        recs = [json.loads(line) for line in out.stdout.splitlines()]
        assert not [r for r in recs if r["userIdentity"].get("accessKeyId") == UNKNOWN_KEY or r["requestID"] in unknown_rids]
    # None of account A's refusals is in account B.
    b = {record(e)["requestID"] for e in lookup_all(srv, root(ACCT_B))}
    assert not b & {c.request_id for c, *_ in calls}


# ======================================================================================
# 4. LookupEvents: attributes, time range, paging, errors, isolation
# ======================================================================================

LOOKUP_REGION = "ap-northeast-1"
BULK_REGION = "sa-east-1"


@pytest.fixture(scope="module")
def regional(srv):
    """A known set of calls in LOOKUP_REGION (account A), spread over at least 3 seconds."""
    R = LOOKUP_REGION
    iot = pclient("iot", srv, root(), region=R)
    iot_nv = pclient("iot", srv, root(), region=R, validate=False)
    a_iot = pclient("iot", srv, alice(), region=R)
    a_sts = pclient("sts", srv, alice(), region=R)
    calls: list[tuple[str, Call]] = []  # (who, call)

    def sleep_to_next_second():
        now = time.time()
        time.sleep(1.05 - (now - int(now)))

    sid1, sid2 = unique("reg"), unique("reg")
    calls.append(("root", create_stream(iot, srv, A, sid1)))                              # 0
    calls.append(("root", ok(iot, "describe_stream", streamId=sid1)))                     # 1
    sleep_to_next_second()
    calls.append(("alice", ok(a_iot, "list_streams")))                                    # 2
    calls.append(("alice", ok(a_sts, "get_caller_identity")))                             # 3
    calls.append(("root", ok(iot, "update_stream", streamId=sid1, description="v2")))     # 4
    sleep_to_next_second()
    calls.append(("root", failed(iot_nv, "list_streams", "InvalidRequestException", 400, maxResults=251)))  # 5
    calls.append(("root", create_stream(iot, srv, A, sid2)))                              # 6
    calls.append(("root", ok(iot, "describe_stream", streamId=sid2)))                     # 7
    sleep_to_next_second()
    calls.append(("root", ok(iot, "describe_stream", streamId=sid1)))                     # 8
    return {"calls": calls, "sid1": sid1, "sid2": sid2,
            "arn1": calls[0][1].resp["streamArn"], "arn2": calls[6][1].resp["streamArn"]}


def _expect(regional, pred) -> list[str]:
    """requestIDs of the regional calls matching pred(i, who, call), newest first."""
    out = [c.request_id for i, (who, c) in enumerate(regional["calls"]) if pred(i, who, c)]
    return list(reversed(out))


def test_lookup_by_each_attribute(srv, regional):
    R = LOOKUP_REGION
    calls = regional["calls"]
    everything = lookup_all(srv, root(), R)
    assert rids(everything) == _expect(regional, lambda *_: True)
    recs = {record(e)["requestID"]: record(e) for e in everything}
    iot_ops = {"create_stream", "describe_stream", "update_stream", "list_streams"}

    def look(key, value):
        evs = lookup_all(srv, root(), R, **attr(key, value))
        return evs, rids(evs)

    # EventId
    target = recs[calls[4][1].request_id]
    evs, got = look("EventId", target["eventID"])
    assert [record(e)["eventID"] for e in evs] == [target["eventID"]]
    evs, _ = look("EventId", str(uuid.uuid4()))
    assert evs == []
    # EventName
    evs, got = look("EventName", "DescribeStream")
    assert got == _expect(regional, lambda i, w, c: c.op == "describe_stream")
    assert {e["EventName"] for e in evs} == {"DescribeStream"}
    _, got = look("EventName", "UpdateStream")
    assert got == [calls[4][1].request_id]
    # ReadOnly
    evs, got = look("ReadOnly", "false")
    assert got == _expect(regional, lambda i, w, c: c.op in ("create_stream", "update_stream"))
    assert len(got) == len(evs), "a LookupEvents record has ReadOnly false"
    evs, got = look("ReadOnly", "true")
    assert got == _expect(regional, lambda i, w, c: c.op not in ("create_stream", "update_stream"))
    assert {e["ReadOnly"] for e in evs} == {"true"}
    # Username
    evs, got = look("Username", "alice")
    assert got == _expect(regional, lambda i, w, c: w == "alice")
    assert {e["Username"] for e in evs} == {"alice"}
    evs, got = look("Username", "root")
    assert got == _expect(regional, lambda i, w, c: w == "root")
    assert {e["Username"] for e in evs} == {"root"}
    assert look("Username", "nobody-at-all")[0] == []
    # ResourceType
    evs, got = look("ResourceType", "AWS::IoT::Stream")
    assert got == _expect(regional, lambda i, w, c: c.op in iot_ops and c.op != "list_streams")
    assert all(any(r["ResourceType"] == "AWS::IoT::Stream" for r in e["Resources"]) for e in evs)
    assert look("ResourceType", "AWS::IAM::Role")[0] == []
    # ResourceName
    _, got = look("ResourceName", regional["arn1"])
    assert got == _expect(regional, lambda i, w, c: i in (0, 1, 4, 8))
    _, got = look("ResourceName", regional["arn2"])
    assert got == _expect(regional, lambda i, w, c: i in (6, 7))
    # EventSource
    evs, got = look("EventSource", STS)
    assert got == [calls[3][1].request_id] and len(evs) == 1
    evs, got = look("EventSource", IOT)
    assert got == _expect(regional, lambda i, w, c: c.op in iot_ops) and len(evs) == len(got)
    # AccessKeyId
    evs, got = look("AccessKeyId", alice().access_key_id)
    assert got == _expect(regional, lambda i, w, c: w == "alice")
    assert {e["AccessKeyId"] for e in evs} == {alice().access_key_id}
    # The lookups themselves are recorded, as root, in this region.
    evs, _ = look("EventName", "LookupEvents")
    assert len(evs) >= 17 and {record(e)["awsRegion"] for e in evs} == {R}


def test_lookup_time_range(srv, regional):
    R = LOOKUP_REGION
    events = [e for e in lookup_all(srv, root(), R) if record(e)["eventSource"] != CT]
    times = sorted({e["EventTime"] for e in events})
    assert len(times) >= 4, f"the regional calls should span 4 seconds: {times}"
    # The second of alice's first call (call 2, right after a second turned): the calls before
    # it are in earlier seconds and later ones follow. Under load calls 0-1 may span two
    # seconds, so it is not always times[1].
    first_alice = regional["calls"][2][1].request_id
    t = next(e["EventTime"] for e in events if record(e)["requestID"] == first_alice)
    after_t = times[times.index(t) + 1]

    def between(start=None, end=None):
        kw = {}
        if start is not None:
            kw["StartTime"] = start
        if end is not None:
            kw["EndTime"] = end
        return rids(lookup_all(srv, root(), R, **kw))

    def want(pred):
        return [record(e)["requestID"] for e in events if pred(e["EventTime"])]

    ms = dt.timedelta(milliseconds=1)
    one = dt.timedelta(seconds=1)
    # Bounds that fall between the seconds of the events.
    assert between(t - ms, after_t - ms) == want(lambda x: x == t)
    assert between(start=t) == want(lambda x: x >= t)
    assert between(end=t - ms) == want(lambda x: x < t)
    assert between(t + one - ms, after_t - ms) == []
    assert between(times[-1] + dt.timedelta(days=1)) == []
    assert between(end=times[0] - dt.timedelta(days=1)) == []
    # Inclusive bounds: an event whose EventTime is exactly EndTime (or StartTime) is returned,
    # so an event's own EventTime selects it.
    assert between(t, t) == want(lambda x: x == t), f"StartTime = EndTime = {t.isoformat()} (the EventTime of 3 events)"
    assert between(t, after_t) == want(lambda x: t <= x <= after_t)
    assert between(end=t) == want(lambda x: x <= t)
    got = rids(lookup_all(srv, root(), R, StartTime=t, EndTime=t, **attr("Username", "alice")))
    assert got == [record(e)["requestID"] for e in events if e["EventTime"] == t and e.get("Username") == "alice"]
    assert first_alice in got


@pytest.fixture(scope="module")
def bulk(srv):
    """63 GetCallerIdentity calls in BULK_REGION."""
    sts = pclient("sts", srv, root(), region=BULK_REGION)
    return [ok(sts, "get_caller_identity").request_id for _ in range(63)]


def test_lookup_paging_boto3(srv, bulk):
    c = ct(srv, root(), BULK_REGION)
    want = list(reversed(bulk))
    first = c.lookup_events(**attr("EventSource", STS))
    assert len(first["Events"]) == 50, "default MaxResults is 50"
    assert first.get("NextToken")
    for size in (7, 50, 1):
        evs = lookup_all(srv, root(), BULK_REGION, page_size=size, **attr("EventSource", STS))
        assert rids(evs) == want, f"page size {size}"
    # Page by page, by hand: full pages, then none.
    got, token, pages = [], None, 0
    while True:
        kw = {"MaxResults": 10, **attr("EventSource", STS)}
        if token:
            kw["NextToken"] = token
        page = c.lookup_events(**kw)
        pages += 1
        got += rids(page["Events"])
        token = page.get("NextToken")
        if not token:
            break
        assert len(page["Events"]) == 10
    assert got == want and pages == 7
    # Without an attribute: the LookupEvents records made meanwhile are interleaved, nothing repeats.
    evs = lookup_all(srv, root(), BULK_REGION, page_size=9)
    ids = [record(e)["eventID"] for e in evs]
    assert len(ids) == len(set(ids))
    assert rids(evs) == want


def test_lookup_paging_cli(srv, bulk):
    out = aws_cli(srv, "cloudtrail", "lookup-events", "--region", BULK_REGION,
                  "--lookup-attributes", f"AttributeKey=EventSource,AttributeValue={STS}", "--page-size", "8")
    assert rids(out["Events"]) == list(reversed(bulk))
    assert "NextToken" not in out
    out = aws_cli(srv, "cloudtrail", "lookup-events", "--region", BULK_REGION,
                  "--lookup-attributes", f"AttributeKey=EventSource,AttributeValue={STS}", "--max-items", "5")
    assert rids(out["Events"]) == list(reversed(bulk))[:5]
    assert out.get("NextToken")
    # The CLI's calls are recorded with the CLI's user agent.
    uas = [record(e)["userAgent"] for e in lookup_all(srv, root(), BULK_REGION, **attr("EventName", "LookupEvents"))]
    assert sum(ua.startswith("aws-cli/1.") for ua in uas) == 8 + 1, uas  # 63/8 -> 8 pages, then 1


def test_lookup_errors(srv, regional):
    p = root()
    R = LOOKUP_REGION
    lookup_error(srv, p, "InvalidMaxResultsException", MaxResults=0)
    lookup_error(srv, p, "InvalidMaxResultsException", MaxResults=51)
    assert len(ct(srv, p, R).lookup_events(MaxResults=1)["Events"]) == 1
    two = [{"AttributeKey": "EventName", "AttributeValue": "CreateStream"},
           {"AttributeKey": "Username", "AttributeValue": "root"}]
    lookup_error(srv, p, "InvalidLookupAttributesException", LookupAttributes=two)
    lookup_error(srv, p, "InvalidLookupAttributesException",
                 LookupAttributes=[{"AttributeKey": "Bogus", "AttributeValue": "x"}])
    now = dt.datetime.now(dt.timezone.utc)
    lookup_error(srv, p, "InvalidTimeRangeException", StartTime=now, EndTime=now - dt.timedelta(hours=1))
    lookup_error(srv, p, "InvalidEventCategoryException", EventCategory="management")
    assert ct(srv, p, R).lookup_events(EventCategory="insight")["Events"] == []
    lookup_error(srv, p, "InvalidNextTokenException", NextToken="garbage-token")
    page = ct(srv, p, R).lookup_events(MaxResults=1, **attr("EventName", "DescribeStream"))
    token = page["NextToken"]
    lookup_error(srv, p, "InvalidNextTokenException", R, NextToken=token, MaxResults=1, **attr("EventName", "CreateStream"))
    lookup_error(srv, p, "InvalidNextTokenException", R, NextToken=token, MaxResults=1)
    # The token is still good with its own parameters.
    nxt = ct(srv, p, R).lookup_events(NextToken=token, MaxResults=1, **attr("EventName", "DescribeStream"))
    assert [e["EventName"] for e in nxt["Events"]] == ["DescribeStream"]
    assert nxt["Events"][0]["EventId"] != page["Events"][0]["EventId"]
    # Another account cannot use A's token to see A's events.
    try:
        other = ct(srv, root(ACCT_B), R).lookup_events(NextToken=token, MaxResults=1, **attr("EventName", "DescribeStream"))
        assert other["Events"] == [], f"account B read account A's events with A's token: {other['Events']}"
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidNextTokenException", e.response["Error"]
    # The refused lookups are recorded with their error code.
    errs = [record(e) for e in lookup_all(srv, p, **attr("EventName", "LookupEvents"))]
    codes = collections.Counter(r.get("errorCode") for r in errs)
    for code in ("InvalidMaxResultsException", "InvalidLookupAttributesException", "InvalidTimeRangeException",
                 "InvalidEventCategoryException", "InvalidNextTokenException"):
        assert codes[code] >= 1, f"no LookupEvents record with {code}: {codes}"


def test_records_are_per_region(srv):
    eu = "eu-west-1"
    c_eu = ok(pclient("sts", srv, root(), region=eu), "get_caller_identity")
    c_iot = ok(pclient("iot", srv, root(), region=eu), "list_streams")
    eu_events = lookup_all(srv, root(), eu)
    found = by_request_id(eu_events)
    for c in (c_eu, c_iot):
        assert len(found[c.request_id]) == 1
        assert record(found[c.request_id][0])["awsRegion"] == eu
    us = {record(e)["requestID"] for e in lookup_all(srv, root(), REGION)}
    assert c_eu.request_id not in us and c_iot.request_id not in us
    assert {record(e)["awsRegion"] for e in eu_events} == {eu}
    # Looking up in eu-west-1 is itself recorded there.
    assert {record(e)["awsRegion"] for e in lookup_all(srv, root(), eu, **attr("EventSource", CT))} == {eu}


def test_records_are_per_account(srv, regional):
    c_a = ok(pclient("sts", srv, root()), "get_caller_identity")
    c_b = ok(pclient("sts", srv, root(ACCT_B)), "get_caller_identity")
    a_all = lookup_all(srv, root())
    b_all = lookup_all(srv, root(ACCT_B))
    a_ids = {record(e)["requestID"] for e in a_all}
    b_ids = {record(e)["requestID"] for e in b_all}
    assert c_b.request_id in b_ids and c_b.request_id not in a_ids
    assert c_a.request_id in a_ids and c_a.request_id not in b_ids
    assert not a_ids & b_ids
    assert {record(e)["recipientAccountId"] for e in b_all} == {B}
    assert {record(e)["recipientAccountId"] for e in a_all} == {A}
    # Attribute lookups do not cross either.
    eid = next(record(e)["eventID"] for e in a_all if record(e)["eventSource"] != CT)
    assert lookup_all(srv, root(ACCT_B), **attr("EventId", eid)) == []
    assert lookup_all(srv, root(ACCT_B), **attr("AccessKeyId", ACCT_A.root_key)) == []
    assert lookup_all(srv, root(ACCT_B), LOOKUP_REGION) == [] or \
        {record(e)["eventSource"] for e in lookup_all(srv, root(ACCT_B), LOOKUP_REGION)} == {CT}
    assert lookup_all(srv, root(ACCT_B), LOOKUP_REGION, **attr("ResourceName", regional["arn1"])) == []


# ======================================================================================
# 5. otatrail events
# ======================================================================================


def events_cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(server.binary), "events", "--data-dir", str(server.data_dir), *args],
                          capture_output=True, text=True, timeout=60, env=clean_env(home=server.workdir))


def test_events_command(srv, regional):
    R = LOOKUP_REGION
    want = lookup_all(srv, root(), R, **attr("EventSource", IOT))
    assert len(want) == 8

    out = events_cli(srv, "--account", A, "--region", R, "--attribute", f"EventSource={IOT}", "--output", "json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [record(e) for e in want]

    out = events_cli(srv, "--account", A, "--region", R, "--attribute", f"EventSource={IOT}", "--output", "table")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 + len(want), out.stdout
    assert "EVENT" in lines[0].upper() and want[0]["EventId"] not in lines[0]
    for line, e in zip(lines[1:], want):
        assert e["EventId"] in line and e["EventName"] in line, (line, e["EventId"])
    assert "ResourceNotFoundException" not in out.stdout
    assert "InvalidRequestException" in out.stdout  # the refused ListStreams' error column

    out = events_cli(srv, "--account", A, "--region", R, "--attribute", "EventName=UpdateStream", "--output", "json")
    assert [json.loads(line)["requestID"] for line in out.stdout.splitlines()] == [regional["calls"][4][1].request_id]

    out = events_cli(srv, "--account", A, "--region", R, "--attribute", f"EventSource={IOT}", "--max", "3", "--output", "json")
    assert [json.loads(line)["eventID"] for line in out.stdout.splitlines()] == [e["EventId"] for e in want[:3]]


    # Account B has no event in that region (other than lookups).
    out = events_cli(srv, "--account", B, "--region", R, "--attribute", f"EventSource={IOT}", "--output", "json")
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout

    # Several accounts and no --account: an error naming them.
    out = events_cli(srv, "--region", R)
    assert out.returncode != 0
    assert A in out.stderr and B in out.stderr, out.stderr
    assert out.stdout.strip() == "" or "EVENT" in out.stdout.upper()

    # --start/--end (inclusive): the newest second of the region's IoT events.
    t = want[0]["EventTime"].strftime("%Y-%m-%dT%H:%M:%SZ")
    newest = [e["EventId"] for e in want if e["EventTime"] == want[0]["EventTime"]]
    out = events_cli(srv, "--account", A, "--region", R, "--attribute", f"EventSource={IOT}", "--start", t,
                     "--output", "json")
    assert [json.loads(line)["eventID"] for line in out.stdout.splitlines()] == newest
    out = events_cli(srv, "--account", A, "--region", R, "--attribute", f"EventSource={IOT}", "--start", t, "--end", t,
                     "--output", "json")
    assert [json.loads(line)["eventID"] for line in out.stdout.splitlines()] == newest, f"--start {t} --end {t}"


# ======================================================================================
# 6. Durability
# ======================================================================================


def _burst(server, n: int, threads: int = 8) -> list[str]:
    acked: list[str] = []
    lock = threading.Lock()
    errors: list[str] = []

    def work(k):
        iot = pclient("iot", server, root())
        for i in range(k):
            try:
                c = create_stream(iot, server, A)
            except AssertionError as e:
                errors.append(str(e))
                continue
            with lock:
                acked.append(c.request_id)

    ts = [threading.Thread(target=work, args=(n // threads,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    return acked


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_records_survive_restart(server_factory, sig):
    rs = server_factory("configured", name=f"audit-restart-{sig.name.lower()}", start=False, accounts=ACCOUNTS)
    rs.config_path.write_text(CONFIG)
    rs.start()
    acked = _burst(rs, 48)
    assert len(acked) == 48
    _, needed_kill = rs.stop(sig)
    if sig == signal.SIGTERM:
        assert not needed_kill, "otatrail did not exit within 5 s of SIGTERM"
    rs.start(rs.port)
    found = collections.Counter(rids(lookup_all(rs, root(), **attr("EventName", "CreateStream")), skip_lookups=False))
    lost = [r for r in acked if found[r] == 0]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged CreateStream calls have no record after {sig.name}"
    assert all(found[r] == 1 for r in acked), "a record appears twice after the restart"
    # The server goes on recording after the restart.
    c = ok(pclient("sts", rs, root()), "get_caller_identity")
    assert c.request_id in rids(lookup_all(rs, root(), **attr("EventSource", STS)))
    rs.stop()
