"""IAM and STS end to end: users, access keys, roles and trust policies, AssumeRole,
GetSessionToken, GetFederationToken, temporary credentials (use, refusal, expiry), restart,
and the aws CLI v1 for the same calls.

The module runs its own servers (not the shared `server` fixture): three accounts, so that
cross-account trust can be checked against a third identity, and `sts_min_duration_seconds = 2`
so that credentials can be seen to expire within a test. Every secret and session token the
tests see is remembered; the last test checks that none of them appears in the server logs.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import (
    REGION,
    AccountSpec,
    AwsCliError,
    Principal,
    assert_client_error,
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
    root_key="AKIAIDROOTA000000001",
    root_secret="idrootA/secret/EXAMPLE/00000000000000000",
    users={
        "alice": ("AKIAIDALICE00000001", "idalice/secret/EXAMPLE/000000000000000000"),
        "bob": ("AKIAIDBOB0000000001", "idbob/secret/EXAMPLE/00000000000000000000"),
    },
)
ACCT_B = AccountSpec(
    id="444455556666",
    root_key="AKIAIDROOTB000000002",
    root_secret="idrootB/secret/EXAMPLE/22222222222222222",
)
# A third account: an identity that no trust policy of these tests names.
ACCT_C = AccountSpec(
    id="777788889999",
    root_key="AKIAIDROOTC000000003",
    root_secret="idrootC/secret/EXAMPLE/33333333333333333",
)
ACCOUNTS = [ACCT_A, ACCT_B, ACCT_C]
A, B, C = ACCT_A.id, ACCT_B.id, ACCT_C.id
MIN_DURATION = 2
CONFIG = f"sts_min_duration_seconds = {MIN_DURATION}\n" + render_config(ACCOUNTS)

# Servers started by this module, and every secret / session token the tests have seen:
# test_no_secret_or_session_token_in_logs (last in the module) greps the logs for them.
SERVERS: list = []
SEEN_SECRETS: set[str] = {a.root_secret for a in ACCOUNTS} | {s for a in ACCOUNTS for (_, s) in a.users.values()}


def _make_server(server_factory, name: str):
    srv = server_factory("configured", name=name, start=False, accounts=ACCOUNTS)
    srv.config_path.write_text(CONFIG)
    SERVERS.append(srv)
    srv.start()
    return srv


@pytest.fixture(scope="module")
def srv(server_factory):
    s = _make_server(server_factory, "identities")
    yield s
    s.stop()


# --------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------


def client(service: str, server, key: str, secret: str, token: str | None = None, validate: bool = True):
    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=client_config(parameter_validation=validate),
    )


def root(account: AccountSpec = ACCT_A) -> Principal:
    return Principal(account.root_key, account.root_secret, account.id)


def user(name: str, account: AccountSpec = ACCT_A) -> Principal:
    key, secret = account.users[name]
    return Principal(key, secret, account.id, name)


def pclient(service: str, server, p: Principal, validate: bool = True):
    return client(service, server, p.access_key_id, p.secret_access_key, validate=validate)


def cclient(service: str, server, creds: dict, validate: bool = True):
    """A client using STS credentials (AccessKeyId/SecretAccessKey/SessionToken)."""
    return client(service, server, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], validate)


def kclient(service: str, server, access_key: dict):
    """A client using an AccessKey returned by CreateAccessKey."""
    return client(service, server, access_key["AccessKeyId"], access_key["SecretAccessKey"])


def remember_creds(creds: dict) -> dict:
    SEEN_SECRETS.add(creds["SecretAccessKey"])
    SEEN_SECRETS.add(creds["SessionToken"])
    return creds


def remember_key(access_key: dict) -> dict:
    SEEN_SECRETS.add(access_key["SecretAccessKey"])
    return access_key


def user_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account}:user{path}{name}"


def role_arn_of(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def assumed_arn(account: str, role: str, session: str) -> str:
    return f"arn:aws:sts::{account}:assumed-role/{role}/{session}"


def trust(*principals: str) -> dict:
    aws = principals[0] if len(principals) == 1 else list(principals)
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": aws}, "Action": "sts:AssumeRole"}],
    }


def new_role(iam, account: str, *principals: str, **kw) -> tuple[str, str]:
    name = unique("role")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust(*principals)), **kw)
    return name, role_arn_of(account, name)


def new_user_with_key(iam) -> tuple[str, dict]:
    name = unique("user")
    iam.create_user(UserName=name)
    return name, remember_key(iam.create_access_key(UserName=name)["AccessKey"])


def assume(sts, arn: str, session: str = "test-session", **kw) -> dict:
    r = sts.assume_role(RoleArn=arn, RoleSessionName=session, **kw)
    remember_creds(r["Credentials"])
    return r


def error_of(fn, *a, **kw) -> ClientError:
    with pytest.raises(ClientError) as e:
        fn(*a, **kw)
    return e.value


def assert_expiration(expiration: dt.datetime, seconds: int, slack: int = 30) -> None:
    expected = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    assert abs((expiration - expected).total_seconds()) <= slack, (
        f"Expiration {expiration.isoformat()} is not now + {seconds}s (expected ~{expected.isoformat()})"
    )


def assert_temporary(creds: dict) -> None:
    assert re.fullmatch(r"ASIA[A-Z0-9]{12,}", creds["AccessKeyId"]), creds["AccessKeyId"]
    assert len(creds["SecretAccessKey"]) >= 20, "secret access key too short"
    assert creds["SessionToken"], "no session token"
    assert isinstance(creds["Expiration"], dt.datetime)


def create_stream_with(iot, server, account: str) -> str:
    sid = unique("idstream")
    key = f"images/{sid}.bin"
    # Buckets belong to accounts: the object lives in a bucket of the stream's account.
    bucket = f"identity-{account}"
    spec = next(a for a in server.accounts if a.id == account)
    put_object(server, bucket, key, principal=server.root(spec))
    r = iot.create_stream(
        streamId=sid,
        files=[s3file(0, bucket, key)],
        roleArn=f"arn:aws:iam::{account}:role/x",
        description="created with temporary credentials",
    )
    assert r["streamId"] == sid
    assert r["streamArn"] == f"arn:aws:iot:{REGION}:{account}:stream/{sid}"
    return sid


def list_stream_ids(iot) -> set[str]:
    out, token = set(), None
    while True:
        r = iot.list_streams(maxResults=250, **({"nextToken": token} if token else {}))
        out |= {s["streamId"] for s in r.get("streams", [])}
        token = r.get("nextToken")
        if not token:
            return out


def assert_refused(server, key: str, secret: str, token: str | None = None,
                   iot_code: str = "UnrecognizedClientException", sts_code: str = "InvalidClientTokenId") -> None:
    e = error_of(client("iot", server, key, secret, token).list_streams)
    assert_client_error(e, iot_code, 403)
    e = error_of(client("sts", server, key, secret, token).get_caller_identity)
    assert_client_error(e, sts_code, 403)


def cli_env(server, key: str, secret: str, token: str | None = None) -> dict:
    home = server.workdir
    extra = {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "no-such-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-such-aws-credentials"),
    }
    if token is not None:
        extra["AWS_SESSION_TOKEN"] = token
    return clean_env(extra, home=home)


def cli(server, *args: str, env: dict):
    return aws_cli(server, *args, "--endpoint-url", server.endpoint, env=env)


@pytest.fixture(scope="module")
def iam_a(srv):
    return pclient("iam", srv, root(ACCT_A))


@pytest.fixture(scope="module")
def sts_a(srv):
    return pclient("sts", srv, root(ACCT_A))


# ======================================================================================
# IAM users
# ======================================================================================


def test_create_user_with_path_and_tags(srv, iam_a):
    name = unique("pathuser")
    tags = [{"Key": "team", "Value": "firmware"}, {"Key": "cost-center", "Value": "42"}]
    before = dt.datetime.now(dt.timezone.utc)
    u = iam_a.create_user(UserName=name, Path="/ota/fleet/", Tags=tags)["User"]
    assert u["UserName"] == name
    assert u["Path"] == "/ota/fleet/"
    assert u["Arn"] == user_arn(A, name, "/ota/fleet/")
    assert re.fullmatch(r"AIDA[A-Z0-9]{12,}", u["UserId"]), u["UserId"]
    assert abs((u["CreateDate"] - before).total_seconds()) < 60
    assert sorted(u.get("Tags", []), key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])

    g = iam_a.get_user(UserName=name)["User"]
    assert (g["UserName"], g["Path"], g["Arn"], g["UserId"]) == (name, "/ota/fleet/", u["Arn"], u["UserId"])
    assert sorted(iam_a.list_user_tags(UserName=name)["Tags"], key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])


def test_create_user_default_path(srv, iam_a):
    name = unique("plain")
    u = iam_a.create_user(UserName=name)["User"]
    assert (u["Path"], u["Arn"]) == ("/", user_arn(A, name))
    assert iam_a.list_user_tags(UserName=name)["Tags"] == []


def test_get_user_without_name_is_the_caller(srv, iam_a):
    u = pclient("iam", srv, user("alice")).get_user()["User"]
    assert (u["UserName"], u["Arn"]) == ("alice", user_arn(A, "alice"))
    assert u["UserId"].startswith("AIDA")
    # Same identity as STS reports.
    ident = pclient("sts", srv, user("alice")).get_caller_identity()
    assert ident["UserId"] == u["UserId"]

    name, key = new_user_with_key(iam_a)
    me = kclient("iam", srv, key).get_user()["User"]
    assert (me["UserName"], me["Arn"]) == (name, user_arn(A, name))


@pytest.mark.parametrize("bad", ["has space", "x" * 65], ids=["space", "65-chars"])
def test_user_name_validation(srv, iam_a, bad):
    # botocore checks the length client side: send it anyway.
    iam = pclient("iam", srv, root(), validate=False)
    e = error_of(iam.create_user, UserName=bad)
    assert_client_error(e, "ValidationError", 400)


def test_user_name_of_64_chars_accepted(srv, iam_a):
    name = ("u" + unique("")).ljust(64, "x")
    assert len(name) == 64
    assert iam_a.create_user(UserName=name)["User"]["UserName"] == name
    iam_a.delete_user(UserName=name)


def test_duplicate_user_names_also_differing_in_case(srv, iam_a):
    name = "Dup-" + unique("u")
    iam_a.create_user(UserName=name)
    for dup in (name, name.lower(), name.upper()):
        e = error_of(iam_a.create_user, UserName=dup)
        assert_client_error(e, "EntityAlreadyExists", 409)
    # A config-declared user too.
    e = error_of(iam_a.create_user, UserName="ALICE")
    assert_client_error(e, "EntityAlreadyExists", 409)


def test_same_user_name_in_another_account(srv, iam_a):
    name = unique("shared")
    iam_a.create_user(UserName=name)
    u = pclient("iam", srv, root(ACCT_B)).create_user(UserName=name)["User"]
    assert u["Arn"] == user_arn(B, name)


def test_absent_user(srv, iam_a):
    e = error_of(iam_a.delete_user, UserName="no-such-user-here")
    assert_client_error(e, "NoSuchEntity", 404)
    e = error_of(iam_a.get_user, UserName="no-such-user-here")
    assert_client_error(e, "NoSuchEntity", 404)
    # alice exists in account A only.
    e = error_of(pclient("iam", srv, root(ACCT_B)).get_user, UserName="alice")
    assert_client_error(e, "NoSuchEntity", 404)


def test_delete_user_conflicts_while_it_has_keys(srv, iam_a):
    name, key = new_user_with_key(iam_a)
    e = error_of(iam_a.delete_user, UserName=name)
    assert_client_error(e, "DeleteConflict", 409)
    assert iam_a.get_user(UserName=name)["User"]["UserName"] == name
    iam_a.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    iam_a.delete_user(UserName=name)
    e = error_of(iam_a.get_user, UserName=name)
    assert_client_error(e, "NoSuchEntity", 404)
    e = error_of(iam_a.delete_user, UserName=name)
    assert_client_error(e, "NoSuchEntity", 404)


def test_list_users_paging(srv, iam_a):
    created = {unique("page") for _ in range(5)}
    for n in created:
        iam_a.create_user(UserName=n)
    everything = iam_a.list_users()
    assert everything["IsTruncated"] is False
    all_names = [u["UserName"] for u in everything["Users"]]
    assert created | {"alice", "bob"} <= set(all_names)

    paged, marker, pages = [], None, 0
    while True:
        kw = {"MaxItems": 2}
        if marker:
            kw["Marker"] = marker
        r = iam_a.list_users(**kw)
        pages += 1
        assert len(r["Users"]) <= 2
        paged += [u["UserName"] for u in r["Users"]]
        if not r["IsTruncated"]:
            assert "Marker" not in r
            break
        assert len(r["Users"]) == 2, "a truncated page must be full"
        assert r.get("Marker"), "IsTruncated without Marker"
        marker = r["Marker"]
        assert pages < 100
    assert len(paged) == len(set(paged)), f"a user listed twice: {paged}"
    assert sorted(paged) == sorted(all_names)
    assert pages == (len(all_names) + 1) // 2

    # Another account's users are not listed.
    names_b = {u["UserName"] for u in pclient("iam", srv, root(ACCT_C)).list_users()["Users"]}
    assert not names_b & (created | {"alice", "bob"})


# ======================================================================================
# Access keys
# ======================================================================================


def test_access_keys_create_list_limit(srv, iam_a):
    name = unique("keys")
    iam_a.create_user(UserName=name)
    k1 = remember_key(iam_a.create_access_key(UserName=name)["AccessKey"])
    k2 = remember_key(iam_a.create_access_key(UserName=name)["AccessKey"])
    for k in (k1, k2):
        assert k["UserName"] == name
        assert k["Status"] == "Active"
        assert re.fullmatch(r"AKIA[A-Z0-9]{12,}", k["AccessKeyId"]), k["AccessKeyId"]
        assert len(k["SecretAccessKey"]) >= 20
    assert k1["AccessKeyId"] != k2["AccessKeyId"] and k1["SecretAccessKey"] != k2["SecretAccessKey"]

    e = error_of(iam_a.create_access_key, UserName=name)
    assert_client_error(e, "LimitExceeded", 409)

    listed = iam_a.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert sorted((k["AccessKeyId"], k["Status"], k["UserName"]) for k in listed) == sorted(
        [(k1["AccessKeyId"], "Active", name), (k2["AccessKeyId"], "Active", name)]
    )
    assert all("SecretAccessKey" not in k for k in listed)

    # Both keys sign as the user.
    for k in (k1, k2):
        ident = kclient("sts", srv, k).get_caller_identity()
        assert (ident["Arn"], ident["Account"]) == (user_arn(A, name), A)
        assert ident["UserId"].startswith("AIDA")
        assert "streams" in kclient("iot", srv, k).list_streams()


def test_inactive_key_refused_at_once_then_reactivated(srv, iam_a):
    name, key = new_user_with_key(iam_a)
    iot, sts = kclient("iot", srv, key), kclient("sts", srv, key)
    assert "streams" in iot.list_streams()
    assert sts.get_caller_identity()["Arn"] == user_arn(A, name)

    iam_a.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    assert [k["Status"] for k in iam_a.list_access_keys(UserName=name)["AccessKeyMetadata"]] == ["Inactive"]
    # The very next call, through the same clients.
    assert_client_error(error_of(iot.list_streams), "UnrecognizedClientException", 403)
    assert_client_error(error_of(sts.get_caller_identity), "InvalidClientTokenId", 403)

    iam_a.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Active")
    assert [k["Status"] for k in iam_a.list_access_keys(UserName=name)["AccessKeyMetadata"]] == ["Active"]
    assert "streams" in iot.list_streams()
    assert sts.get_caller_identity()["Arn"] == user_arn(A, name)


def test_deleted_key_refused(srv, iam_a):
    name, key = new_user_with_key(iam_a)
    assert kclient("sts", srv, key).get_caller_identity()["Arn"] == user_arn(A, name)
    iam_a.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    assert iam_a.list_access_keys(UserName=name)["AccessKeyMetadata"] == []
    assert_refused(srv, key["AccessKeyId"], key["SecretAccessKey"])
    # Deleting it again: it is gone.
    e = error_of(iam_a.delete_access_key, UserName=name, AccessKeyId=key["AccessKeyId"])
    assert_client_error(e, "NoSuchEntity", 404)


def test_cli_create_user_and_access_key(srv):
    name = unique("cliuser")
    root_env = cli_env(srv, ACCT_A.root_key, ACCT_A.root_secret)
    out = cli(srv, "iam", "create-user", "--user-name", name, "--path", "/cli/", "--tags", "Key=made-by,Value=cli", env=root_env)
    assert out["User"]["UserName"] == name
    assert out["User"]["Arn"] == user_arn(A, name, "/cli/")
    assert out["User"]["Path"] == "/cli/"
    key = remember_key(cli(srv, "iam", "create-access-key", "--user-name", name, env=root_env)["AccessKey"])
    assert key["UserName"] == name and key["Status"] == "Active"
    assert key["AccessKeyId"].startswith("AKIA")

    ident = cli(srv, "sts", "get-caller-identity", env=cli_env(srv, key["AccessKeyId"], key["SecretAccessKey"]))
    assert ident["Arn"] == user_arn(A, name, "/cli/")
    assert ident["Account"] == A


# ======================================================================================
# IAM roles
# ======================================================================================


def test_create_get_list_delete_role(srv, iam_a):
    name = unique("role")
    doc = trust(f"arn:aws:iam::{A}:root")
    tags = [{"Key": "purpose", "Value": "ota"}]
    r = iam_a.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(doc),
        Description="OTA update role",
        MaxSessionDuration=7200,
        Tags=tags,
    )["Role"]
    assert r["RoleName"] == name
    assert r["Arn"] == role_arn_of(A, name)
    assert r["Path"] == "/"
    assert re.fullmatch(r"AROA[A-Z0-9]{12,}", r["RoleId"]), r["RoleId"]
    assert r["MaxSessionDuration"] == 7200
    assert r["Description"] == "OTA update role"

    g = iam_a.get_role(RoleName=name)["Role"]
    assert (g["RoleName"], g["Arn"], g["RoleId"]) == (name, r["Arn"], r["RoleId"])
    assert g["AssumeRolePolicyDocument"] == doc  # boto3 decodes the URL-encoded JSON
    assert (g["MaxSessionDuration"], g["Description"]) == (7200, "OTA update role")
    assert g.get("Tags") == tags
    assert iam_a.list_role_tags(RoleName=name)["Tags"] == tags

    assert name in {x["RoleName"] for x in iam_a.list_roles()["Roles"]}
    assert name not in {x["RoleName"] for x in pclient("iam", srv, root(ACCT_B)).list_roles()["Roles"]}

    iam_a.delete_role(RoleName=name)
    assert_client_error(error_of(iam_a.get_role, RoleName=name), "NoSuchEntity", 404)
    assert_client_error(error_of(iam_a.delete_role, RoleName=name), "NoSuchEntity", 404)
    assert name not in {x["RoleName"] for x in iam_a.list_roles()["Roles"]}


def test_role_default_max_session_duration(srv, iam_a):
    name, _ = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    assert iam_a.get_role(RoleName=name)["Role"]["MaxSessionDuration"] == 3600


@pytest.mark.parametrize("value,ok", [(3599, False), (3600, True), (43200, True), (43201, False)])
def test_role_max_session_duration_bounds(srv, value, ok):
    iam = pclient("iam", srv, root(), validate=False)
    name = unique("msd")
    kw = dict(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust(f"arn:aws:iam::{A}:root")), MaxSessionDuration=value)
    if ok:
        assert iam.create_role(**kw)["Role"]["MaxSessionDuration"] == value
    else:
        assert_client_error(error_of(iam.create_role, **kw), "ValidationError", 400)
        assert_client_error(error_of(iam.get_role, RoleName=name), "NoSuchEntity", 404)


MALFORMED_POLICIES = {
    "invalid-json": '{"Version": "2012-10-17", "Statement": [',
    "no-statement": json.dumps({"Version": "2012-10-17"}),
    "effect-maybe": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Maybe", "Principal": {"AWS": f"arn:aws:iam::{A}:root"}, "Action": "sts:AssumeRole"}]}),
    "no-principal": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole"}]}),
    "bad-principal": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "alice"}, "Action": "sts:AssumeRole"}]}),
}


@pytest.mark.parametrize("doc", list(MALFORMED_POLICIES.values()), ids=list(MALFORMED_POLICIES))
def test_create_role_malformed_trust_policy(srv, iam_a, doc):
    name = unique("bad")
    e = error_of(iam_a.create_role, RoleName=name, AssumeRolePolicyDocument=doc)
    assert_client_error(e, "MalformedPolicyDocument", 400)
    assert_client_error(error_of(iam_a.get_role, RoleName=name), "NoSuchEntity", 404)


@pytest.mark.parametrize("kind", ["effect-maybe", "bad-principal"])
def test_update_assume_role_policy_malformed(srv, iam_a, kind):
    name, _ = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    e = error_of(iam_a.update_assume_role_policy, RoleName=name, PolicyDocument=MALFORMED_POLICIES[kind])
    assert_client_error(e, "MalformedPolicyDocument", 400)
    assert iam_a.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == trust(f"arn:aws:iam::{A}:root")


def test_duplicate_role_names_also_differing_in_case(srv, iam_a):
    name = "Dup-" + unique("r")
    doc = json.dumps(trust(f"arn:aws:iam::{A}:root"))
    iam_a.create_role(RoleName=name, AssumeRolePolicyDocument=doc)
    for dup in (name, name.lower(), name.upper()):
        e = error_of(iam_a.create_role, RoleName=dup, AssumeRolePolicyDocument=doc)
        assert_client_error(e, "EntityAlreadyExists", 409)


def test_tag_untag_user_and_role(srv, iam_a):
    uname = unique("tagu")
    iam_a.create_user(UserName=uname, Tags=[{"Key": "a", "Value": "1"}])
    iam_a.tag_user(UserName=uname, Tags=[{"Key": "b", "Value": "2"}, {"Key": "c", "Value": "3"}])
    assert sorted((t["Key"], t["Value"]) for t in iam_a.list_user_tags(UserName=uname)["Tags"]) == [("a", "1"), ("b", "2"), ("c", "3")]
    iam_a.tag_user(UserName=uname, Tags=[{"Key": "a", "Value": "changed"}])
    iam_a.untag_user(UserName=uname, TagKeys=["b"])
    assert sorted((t["Key"], t["Value"]) for t in iam_a.list_user_tags(UserName=uname)["Tags"]) == [("a", "changed"), ("c", "3")]
    assert_client_error(error_of(iam_a.tag_user, UserName="no-such-user-x", Tags=[{"Key": "k", "Value": "v"}]), "NoSuchEntity", 404)

    rname, _ = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    assert iam_a.list_role_tags(RoleName=rname)["Tags"] == []
    iam_a.tag_role(RoleName=rname, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": "fw"}])
    assert sorted((t["Key"], t["Value"]) for t in iam_a.list_role_tags(RoleName=rname)["Tags"]) == [("env", "prod"), ("owner", "fw")]
    iam_a.untag_role(RoleName=rname, TagKeys=["env"])
    assert iam_a.list_role_tags(RoleName=rname)["Tags"] == [{"Key": "owner", "Value": "fw"}]
    assert iam_a.get_role(RoleName=rname)["Role"].get("Tags") == [{"Key": "owner", "Value": "fw"}]
    assert_client_error(error_of(iam_a.list_role_tags, RoleName="no-such-role-x"), "NoSuchEntity", 404)


# ======================================================================================
# STS: GetCallerIdentity
# ======================================================================================


def test_get_caller_identity_root_and_user(srv):
    for acct in ACCOUNTS:
        r = pclient("sts", srv, root(acct)).get_caller_identity()
        assert (r["Account"], r["Arn"], r["UserId"]) == (acct.id, f"arn:aws:iam::{acct.id}:root", acct.id)
    for name in ("alice", "bob"):
        r = pclient("sts", srv, user(name)).get_caller_identity()
        assert (r["Account"], r["Arn"]) == (A, user_arn(A, name))
        assert re.fullmatch(r"AIDA[A-Z0-9]{12,}", r["UserId"]), r["UserId"]
    assert pclient("sts", srv, user("alice")).get_caller_identity()["UserId"] != pclient("sts", srv, user("bob")).get_caller_identity()["UserId"]


# ======================================================================================
# STS: AssumeRole
# ======================================================================================


def test_assume_role_trusting_account_root(srv, iam_a, sts_a):
    name, arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    role_id = iam_a.get_role(RoleName=name)["Role"]["RoleId"]

    r = assume(sts_a, arn, "root-session", DurationSeconds=1800)
    creds = r["Credentials"]
    assert_temporary(creds)
    assert_expiration(creds["Expiration"], 1800)
    assert r["AssumedRoleUser"]["Arn"] == assumed_arn(A, name, "root-session")
    assert r["AssumedRoleUser"]["AssumedRoleId"] == f"{role_id}:root-session"

    ident = cclient("sts", srv, creds).get_caller_identity()
    assert (ident["Account"], ident["Arn"], ident["UserId"]) == (A, assumed_arn(A, name, "root-session"), f"{role_id}:root-session")

    # IoT with the session credentials: the stream belongs to the role's account.
    iot = cclient("iot", srv, creds)
    sid = create_stream_with(iot, srv, A)
    assert iot.describe_stream(streamId=sid)["streamInfo"]["streamId"] == sid
    assert sid in list_stream_ids(pclient("iot", srv, root(ACCT_A)))

    # IAM users of the account may assume it too.
    r = assume(pclient("sts", srv, user("alice")), arn, "alice-session")
    assert_temporary(r["Credentials"])
    assert_expiration(r["Credentials"]["Expiration"], 3600)  # default duration
    assert cclient("sts", srv, r["Credentials"]).get_caller_identity()["Arn"] == assumed_arn(A, name, "alice-session")
    # ... but not the root of an account the policy does not name.
    e = error_of(pclient("sts", srv, root(ACCT_C)).assume_role, RoleArn=arn, RoleSessionName="intruder")
    assert_client_error(e, "AccessDenied", 403)


def test_assume_role_trusting_one_user(srv, iam_a):
    _, arn = new_role(iam_a, A, user_arn(A, "alice"))
    r = assume(pclient("sts", srv, user("alice")), arn, "only-alice")
    assert r["AssumedRoleUser"]["Arn"].endswith("/only-alice")

    e = error_of(pclient("sts", srv, user("bob")).assume_role, RoleArn=arn, RoleSessionName="bob-try")
    assert_client_error(e, "AccessDenied", 403)
    assert e.response["Error"]["Message"] == (
        f"User: {user_arn(A, 'bob')} is not authorized to perform: sts:AssumeRole on resource: {arn}"
    )
    e = error_of(pclient("sts", srv, root(ACCT_A)).assume_role, RoleArn=arn, RoleSessionName="root-try")
    assert_client_error(e, "AccessDenied", 403)


def test_update_assume_role_policy_changes_who_may_assume(srv, iam_a):
    name, arn = new_role(iam_a, A, user_arn(A, "alice"))
    assume(pclient("sts", srv, user("alice")), arn, "before")
    new_doc = trust(user_arn(A, "bob"))
    iam_a.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(new_doc))
    assert iam_a.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"] == new_doc
    assume(pclient("sts", srv, user("bob")), arn, "after")
    e = error_of(pclient("sts", srv, user("alice")).assume_role, RoleArn=arn, RoleSessionName="after")
    assert_client_error(e, "AccessDenied", 403,
                        f"User: {user_arn(A, 'alice')} is not authorized to perform: sts:AssumeRole on resource: {arn}")


def test_cross_account_trust(srv):
    iam_b = pclient("iam", srv, root(ACCT_B))
    name, arn = new_role(iam_b, B, f"arn:aws:iam::{A}:root")
    assert arn.startswith(f"arn:aws:iam::{B}:role/")

    r = assume(pclient("sts", srv, root(ACCT_A)), arn, "from-a")
    creds = r["Credentials"]
    assert r["AssumedRoleUser"]["Arn"] == assumed_arn(B, name, "from-a")
    ident = cclient("sts", srv, creds).get_caller_identity()
    assert (ident["Account"], ident["Arn"]) == (B, assumed_arn(B, name, "from-a"))
    # The session acts in account B.
    sid = create_stream_with(cclient("iot", srv, creds), srv, B)
    assert sid in list_stream_ids(pclient("iot", srv, root(ACCT_B)))
    assert sid not in list_stream_ids(pclient("iot", srv, root(ACCT_A)))

    # An IAM user of account A: the policy names A's root.
    r = assume(pclient("sts", srv, user("alice")), arn, "alice-from-a")
    assert cclient("sts", srv, r["Credentials"]).get_caller_identity()["Arn"] == assumed_arn(B, name, "alice-from-a")

    # A third account: refused.
    e = error_of(pclient("sts", srv, root(ACCT_C)).assume_role, RoleArn=arn, RoleSessionName="from-c")
    assert_client_error(e, "AccessDenied", 403,
                        f"User: arn:aws:iam::{C}:root is not authorized to perform: sts:AssumeRole on resource: {arn}")


def test_assume_nonexistent_role(srv, sts_a):
    for arn in (role_arn_of(A, "no-such-role-anywhere"), role_arn_of(B, "no-such-role-anywhere")):
        e = error_of(sts_a.assume_role, RoleArn=arn, RoleSessionName="nobody")
        assert_client_error(e, "AccessDenied", 403)


@pytest.mark.parametrize("session", ["a", "has space"], ids=["1-char", "space"])
def test_role_session_name_validation(srv, iam_a, session):
    _, arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    sts = pclient("sts", srv, root(), validate=False)
    e = error_of(sts.assume_role, RoleArn=arn, RoleSessionName=session)
    assert_client_error(e, "ValidationError", 400)


def test_duration_limits(srv, iam_a):
    _, arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root", MaxSessionDuration=3600)
    sts = pclient("sts", srv, root(), validate=False)
    e = error_of(sts.assume_role, RoleArn=arn, RoleSessionName="too-long", DurationSeconds=3601)
    assert_client_error(e, "ValidationError", 400)
    # Below the configured minimum (2 s).
    e = error_of(sts.assume_role, RoleArn=arn, RoleSessionName="too-short", DurationSeconds=MIN_DURATION - 1)
    assert_client_error(e, "ValidationError", 400)
    r = assume(sts, arn, "exactly-max", DurationSeconds=3600)
    assert_expiration(r["Credentials"]["Expiration"], 3600)

    _, long_arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root", MaxSessionDuration=43200)
    r = assume(sts, long_arn, "twelve-hours", DurationSeconds=43200)
    assert_expiration(r["Credentials"]["Expiration"], 43200)


def test_source_identity_and_tags(srv, iam_a, sts_a):
    name, arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    r = assume(sts_a, arn, "tagged", SourceIdentity="ota-admin",
               Tags=[{"Key": "project", "Value": "ota"}, {"Key": "stage", "Value": "canary"}])
    assert r["SourceIdentity"] == "ota-admin"
    assert r["AssumedRoleUser"]["Arn"] == assumed_arn(A, name, "tagged")
    assert_temporary(r["Credentials"])


def test_role_chaining(srv, iam_a, sts_a):
    first, first_arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    second, second_arn = new_role(iam_a, A, first_arn)
    c1 = assume(sts_a, first_arn, "hop1")["Credentials"]
    r2 = assume(cclient("sts", srv, c1), second_arn, "hop2")
    c2 = r2["Credentials"]
    assert_temporary(c2)
    assert c2["AccessKeyId"] != c1["AccessKeyId"]
    assert r2["AssumedRoleUser"]["Arn"] == assumed_arn(A, second, "hop2")
    ident = cclient("sts", srv, c2).get_caller_identity()
    assert (ident["Account"], ident["Arn"]) == (A, assumed_arn(A, second, "hop2"))
    assert ident["UserId"].startswith("AROA") and ident["UserId"].endswith(":hop2")
    create_stream_with(cclient("iot", srv, c2), srv, A)

    # The second role trusts only the first role: the account root cannot assume it directly.
    e = error_of(sts_a.assume_role, RoleArn=second_arn, RoleSessionName="direct")
    assert_client_error(e, "AccessDenied", 403)


# ======================================================================================
# STS: GetSessionToken, GetFederationToken
# ======================================================================================


def test_get_session_token_acts_as_user(srv):
    alice_sts = pclient("sts", srv, user("alice"))
    alice_id = alice_sts.get_caller_identity()["UserId"]
    creds = remember_creds(alice_sts.get_session_token(DurationSeconds=900)["Credentials"])
    assert_temporary(creds)
    assert_expiration(creds["Expiration"], 900)
    ident = cclient("sts", srv, creds).get_caller_identity()
    assert (ident["Account"], ident["Arn"], ident["UserId"]) == (A, user_arn(A, "alice"), alice_id)
    assert "streams" in cclient("iot", srv, creds).list_streams()
    create_stream_with(cclient("iot", srv, creds), srv, A)


def test_get_federation_token(srv):
    r = pclient("sts", srv, user("alice")).get_federation_token(Name="fed1", DurationSeconds=900)
    creds = remember_creds(r["Credentials"])
    assert_temporary(creds)
    assert_expiration(creds["Expiration"], 900)
    assert r["FederatedUser"] == {"FederatedUserId": f"{A}:fed1", "Arn": f"arn:aws:sts::{A}:federated-user/fed1"}
    ident = cclient("sts", srv, creds).get_caller_identity()
    assert (ident["Account"], ident["Arn"], ident["UserId"]) == (A, f"arn:aws:sts::{A}:federated-user/fed1", f"{A}:fed1")
    assert "streams" in cclient("iot", srv, creds).list_streams()


def test_cli_get_federation_token(srv):
    alice = user("alice")
    out = cli(srv, "sts", "get-federation-token", "--name", "fed1",
              env=cli_env(srv, alice.access_key_id, alice.secret_access_key))
    creds = remember_creds(out["Credentials"])
    assert out["FederatedUser"] == {"FederatedUserId": f"{A}:fed1", "Arn": f"arn:aws:sts::{A}:federated-user/fed1"}
    assert creds["AccessKeyId"].startswith("ASIA")
    ident = cli(srv, "sts", "get-caller-identity",
                env=cli_env(srv, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]))
    assert ident == {"UserId": f"{A}:fed1", "Account": A, "Arn": f"arn:aws:sts::{A}:federated-user/fed1"}


def test_cli_create_role_assume_role_and_use_credentials(srv):
    name = unique("clirole")
    root_env = cli_env(srv, ACCT_A.root_key, ACCT_A.root_secret)
    out = cli(srv, "iam", "create-role", "--role-name", name,
              "--assume-role-policy-document", json.dumps(trust(f"arn:aws:iam::{A}:root")),
              "--description", "made by the CLI", "--max-session-duration", "7200", env=root_env)
    assert out["Role"]["Arn"] == role_arn_of(A, name)
    assert out["Role"]["MaxSessionDuration"] == 7200

    out = cli(srv, "sts", "assume-role", "--role-arn", role_arn_of(A, name), "--role-session-name", "cli-session",
              "--duration-seconds", "7200", env=root_env)
    creds = remember_creds(out["Credentials"])
    assert creds["AccessKeyId"].startswith("ASIA")
    assert out["AssumedRoleUser"]["Arn"] == assumed_arn(A, name, "cli-session")
    exp = dt.datetime.fromisoformat(creds["Expiration"].replace("Z", "+00:00"))
    assert_expiration(exp, 7200)

    session_env = cli_env(srv, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    ident = cli(srv, "sts", "get-caller-identity", env=session_env)
    assert ident["Arn"] == assumed_arn(A, name, "cli-session")
    assert ident["Account"] == A
    assert ident["UserId"].startswith("AROA") and ident["UserId"].endswith(":cli-session")

    # Without the session token the CLI is refused.
    no_token_env = cli_env(srv, creds["AccessKeyId"], creds["SecretAccessKey"])
    with pytest.raises(AwsCliError) as e:
        cli(srv, "sts", "get-caller-identity", env=no_token_env)
    assert "InvalidClientTokenId" in e.value.stderr


# ======================================================================================
# Temporary credentials refused
# ======================================================================================


@pytest.fixture(scope="module")
def role_creds(srv, iam_a, sts_a):
    _, arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    return assume(sts_a, arn, "refusals")["Credentials"]


def test_session_credentials_work(srv, role_creds):
    assert "streams" in cclient("iot", srv, role_creds).list_streams()
    assert cclient("sts", srv, role_creds).get_caller_identity()["Arn"].endswith("/refusals")


def test_session_token_missing(srv, role_creds):
    assert_refused(srv, role_creds["AccessKeyId"], role_creds["SecretAccessKey"], None)


def test_session_token_altered(srv, role_creds):
    assert_refused(srv, role_creds["AccessKeyId"], role_creds["SecretAccessKey"], role_creds["SessionToken"] + "A")


def test_session_token_of_other_credentials(srv, iam_a, sts_a, role_creds):
    _, arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    other = assume(sts_a, arn, "other")["Credentials"]
    assert_refused(srv, role_creds["AccessKeyId"], role_creds["SecretAccessKey"], other["SessionToken"])


def test_expired_credentials(srv, iam_a):
    _, arn = new_role(iam_a, A, f"arn:aws:iam::{A}:root")
    sts = pclient("sts", srv, root(), validate=False)
    r = sts.assume_role(RoleArn=arn, RoleSessionName="short", DurationSeconds=3)
    creds = remember_creds(r["Credentials"])
    fed = remember_creds(pclient("sts", srv, user("alice"), validate=False)
                         .get_session_token(DurationSeconds=3)["Credentials"])
    assert_expiration(creds["Expiration"], 3, slack=2)
    assert "streams" in cclient("iot", srv, creds).list_streams()
    assert cclient("sts", srv, fed).get_caller_identity()["Arn"] == user_arn(A, "alice")

    # Both sets must have expired: the second was issued later (much later on a loaded machine).
    latest = max(creds["Expiration"], fed["Expiration"])
    wait = (latest - dt.datetime.now(dt.timezone.utc)).total_seconds() + 1.2
    time.sleep(max(wait, 0))
    for c in (creds, fed):
        assert_refused(srv, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"],
                       iot_code="ExpiredTokenException", sts_code="ExpiredToken")


# ======================================================================================
# Restart
# ======================================================================================


def test_identities_survive_restart(server_factory):
    rs = _make_server(server_factory, "identities-restart")
    iam = pclient("iam", rs, root())
    name = unique("durable")
    iam.create_user(UserName=name, Tags=[{"Key": "k", "Value": "v"}])
    kept = remember_key(iam.create_access_key(UserName=name)["AccessKey"])
    gone = remember_key(iam.create_access_key(UserName=name)["AccessKey"])
    iam.delete_access_key(UserName=name, AccessKeyId=gone["AccessKeyId"])
    inactive_user, inactive = unique("inactive"), None
    iam.create_user(UserName=inactive_user)
    inactive = remember_key(iam.create_access_key(UserName=inactive_user)["AccessKey"])
    iam.update_access_key(UserName=inactive_user, AccessKeyId=inactive["AccessKeyId"], Status="Inactive")

    role, arn = new_role(iam, A, f"arn:aws:iam::{A}:root", MaxSessionDuration=7200, Description="durable")
    role_before = iam.get_role(RoleName=role)["Role"]
    user_before = iam.get_user(UserName=name)["User"]
    role_creds = assume(pclient("sts", rs, root()), arn, "before-restart", DurationSeconds=3600)["Credentials"]
    user_creds = remember_creds(kclient("sts", rs, kept).get_session_token(DurationSeconds=900)["Credentials"])
    fed = remember_creds(pclient("sts", rs, user("alice")).get_federation_token(Name="fed1")["Credentials"])
    alice_id = pclient("sts", rs, user("alice")).get_caller_identity()["UserId"]

    _, needed_kill = rs.stop(signal.SIGTERM)
    assert not needed_kill, "otatrail did not exit within 5 s of SIGTERM"
    rs.start(rs.port)

    iam = pclient("iam", rs, root())
    u = iam.get_user(UserName=name)["User"]
    assert (u["UserId"], u["Arn"], u.get("Tags")) == (user_before["UserId"], user_before["Arn"], user_before.get("Tags"))
    assert [k["AccessKeyId"] for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]] == [kept["AccessKeyId"]]
    ident = kclient("sts", rs, kept).get_caller_identity()
    assert (ident["Arn"], ident["UserId"]) == (user_arn(A, name), user_before["UserId"])
    assert "streams" in kclient("iot", rs, kept).list_streams()
    assert_refused(rs, gone["AccessKeyId"], gone["SecretAccessKey"])
    assert_refused(rs, inactive["AccessKeyId"], inactive["SecretAccessKey"])
    assert pclient("sts", rs, user("alice")).get_caller_identity()["UserId"] == alice_id

    r = iam.get_role(RoleName=role)["Role"]
    for field in ("RoleId", "Arn", "AssumeRolePolicyDocument", "MaxSessionDuration", "Description", "CreateDate"):
        assert r[field] == role_before[field], f"role {field} changed across restart"

    ident = cclient("sts", rs, role_creds).get_caller_identity()
    assert ident["Arn"] == assumed_arn(A, role, "before-restart")
    create_stream_with(cclient("iot", rs, role_creds), rs, A)
    assert cclient("sts", rs, user_creds).get_caller_identity()["Arn"] == user_arn(A, name)
    assert cclient("sts", rs, fed).get_caller_identity()["Arn"] == f"arn:aws:sts::{A}:federated-user/fed1"
    # Session tokens are still checked after the restart.
    assert_refused(rs, role_creds["AccessKeyId"], role_creds["SecretAccessKey"], role_creds["SessionToken"] + "x")
    # And new sessions can be issued.
    r2 = assume(pclient("sts", rs, user("alice")), arn, "after-restart")
    assert cclient("sts", rs, r2["Credentials"]).get_caller_identity()["Arn"] == assumed_arn(A, role, "after-restart")
    rs.stop()


# ======================================================================================
# Logs (keep last)
# ======================================================================================


def test_no_secret_or_session_token_in_logs(srv):
    assert len(SEEN_SECRETS) > len(ACCOUNTS) + 2, "the tests above did not record the secrets they saw"
    for s in SERVERS:
        logs = s.all_logs()
        assert logs.strip(), f"server {s.name} wrote no log at all"
        leaked = [x for x in SEEN_SECRETS if x in logs]
        assert not leaked, (
            f"{len(leaked)} secret(s)/session token(s) appear in the logs of {s.name}: "
            + ", ".join(x[:6] + "…" for x in leaked)
        )
