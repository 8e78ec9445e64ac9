"""OTA updates (aws-api.md §5.6-5.9; device.md §1, §4): CreateOTAUpdate over MQTT and HTTP
with a custom signature (checked on the server) and with a signing profile of the server's
configuration, the state machine to CREATE_COMPLETE or CREATE_FAILED (with errorInfo), the
job and its afr_ota document as `aws iot describe-job` / `get-job-document` show them,
GetOTAUpdate, ListOTAUpdates (status filter, paging), DeleteOTAUpdate with each flag
combination, DeleteStream refusing a stream an update uses, the refusals, a restart with
updates in flight, and LookupEvents: the user's calls and the service's CreateStream /
CreateJob / StartSigningJob as the update's role assumed by iot.amazonaws.com.
"""

from __future__ import annotations

import base64
import datetime
import json
import time

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import REGION, assert_client_error, aws_cli, iot_client, make_client, unique

BUCKET = "ota-firmware"
IMAGE = b"\x7fELF signed firmware image " + bytes(range(256)) * 40
CERT_PATH = "Code Verify Key"
DONE = {"CREATE_COMPLETE", "CREATE_FAILED", "DELETE_FAILED"}


def self_signed(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fw-signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class Env:
    def __init__(self, srv, key, cert_pem: str):
        self.srv, self.key, self.cert_pem = srv, key, cert_pem
        self.acct = srv.account_id
        self.iot = iot_client(srv)
        self.role = f"arn:aws:iam::{self.acct}:role/ota-role"

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()

    def thing(self, name: str) -> str:
        return f"arn:aws:iot:{REGION}:{self.acct}:thing/{name}"

    def group(self, name: str) -> str:
        return f"arn:aws:iot:{REGION}:{self.acct}:thinggroup/{name}"


@pytest.fixture(scope="module")
def env(server_factory, tmp_path_factory):
    srv = server_factory("configured", name="test_ota_updates", start=False)
    keys = tmp_path_factory.mktemp("signer")
    key = ec.generate_private_key(ec.SECP256R1())
    (keys / "signer.key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert = self_signed(key)
    (keys / "signer.crt.pem").write_bytes(cert)
    with open(srv.config_path, "a") as f:
        f.write(
            "\n[[signing_profiles]]\n"
            'name = "fw-signer"\n'
            f'private_key_file = "{keys / "signer.key.pem"}"\n'
            f'certificate_file = "{keys / "signer.crt.pem"}"\n'
            f'certificate_path_on_device = "{CERT_PATH}"\n'
        )
    srv.start()
    e = Env(srv, key, cert.decode())
    iam = make_client("iam", srv)
    trust = lambda p: json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": p, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="ota-role", AssumeRolePolicyDocument=trust({"Service": "iot.amazonaws.com"}))
    iam.create_role(RoleName="human-role", AssumeRolePolicyDocument=trust({"AWS": e.acct}))
    # The operator uploads the image with the aws CLI.
    image = keys / "firmware.bin"
    image.write_bytes(IMAGE)
    aws_cli(srv, "s3", "mb", f"s3://{BUCKET}")
    aws_cli(srv, "s3", "cp", str(image), f"s3://{BUCKET}/fw/v2.bin", "--only-show-errors")
    e.iot.create_thing_group(thingGroupName="ota-fleet")
    for t in ("ota-dev1", "ota-dev2"):
        e.iot.create_thing(thingName=t)
        e.iot.add_thing_to_thing_group(thingGroupName="ota-fleet", thingName=t)
    yield e
    srv.stop()


def s3_file(key: str = "fw/v2.bin", signing: dict | None = None, name: str = "/fw.bin") -> dict:
    f = {"fileName": name, "fileLocation": {"s3Location": {"bucket": BUCKET, "key": key}}}
    if signing:
        f["codeSigning"] = signing
    return f


def custom(sig: str, cert: str | None = None) -> dict:
    chain = {"certificateName": CERT_PATH}
    if cert:
        chain["inlineDocument"] = cert
    return {"customCodeSigning": {"signature": {"inlineDocument": base64.b64decode(sig)}, "certificateChain": chain,
                                  "hashAlgorithm": "SHA256", "signatureAlgorithm": "ECDSA"}}


def create(env: Env, uid: str, files: list[dict], protocols=("MQTT",), **kw) -> dict:
    return env.iot.create_ota_update(otaUpdateId=uid, targets=kw.pop("targets", [env.group("ota-fleet")]),
                                     protocols=list(protocols), files=files, roleArn=kw.pop("roleArn", env.role), **kw)


def wait(env: Env, uid: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = env.iot.get_ota_update(otaUpdateId=uid)["otaUpdateInfo"]
        if info["otaUpdateStatus"] in DONE or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def job_document(env: Env, job_id: str) -> dict:
    return json.loads(aws_cli(env.srv, "iot", "get-job-document", "--job-id", job_id)["document"])


def test_mqtt_update_with_a_custom_signature(env):
    uid = unique("mqtt")
    sig = env.sign(IMAGE)
    out = create(env, uid, [s3_file(signing=custom(sig, env.cert_pem))],
                 description="v2 rollout", targetSelection="CONTINUOUS",
                 awsJobExecutionsRolloutConfig={"maximumPerMinute": 10},
                 awsJobAbortConfig={"abortCriteriaList": [{"failureType": "FAILED", "action": "CANCEL",
                                                           "thresholdPercentage": 50, "minNumberOfExecutedThings": 1}]},
                 awsJobTimeoutConfig={"inProgressTimeoutInMinutes": 30},
                 additionalParameters={"note": "not for devices"}, tags=[{"Key": "team", "Value": "fw"}])
    assert out["otaUpdateStatus"] == "CREATE_PENDING"
    assert out["otaUpdateArn"] == f"arn:aws:iot:{REGION}:{env.acct}:otaupdate/{uid}"
    info = wait(env, uid)
    assert info["otaUpdateStatus"] == "CREATE_COMPLETE", info
    job_id = f"AFR_OTA-{uid}"
    assert info["awsIotJobId"] == job_id and info["awsIotJobArn"].endswith(f":job/{job_id}")
    assert info["otaUpdateFiles"][0]["fileName"] == "/fw.bin" and info["additionalParameters"] == {"note": "not for devices"}
    assert info["targetSelection"] == "CONTINUOUS" and info["description"] == "v2 rollout"

    job = aws_cli(env.srv, "iot", "describe-job", "--job-id", job_id)["job"]
    assert job["targetSelection"] == "CONTINUOUS" and job["targets"] == [env.group("ota-fleet")]
    assert job["jobExecutionsRolloutConfig"]["maximumPerMinute"] == 10
    assert job["abortConfig"]["criteriaList"][0]["failureType"] == "FAILED"
    assert job["timeoutConfig"]["inProgressTimeoutInMinutes"] == 30
    doc = job_document(env, job_id)["afr_ota"]
    assert doc["protocols"] == ["MQTT"]
    stream = doc["streamname"]
    assert stream.startswith("AFR_OTA-") and len(stream) == 44
    f = doc["files"][0]
    assert f == {"filepath": "/fw.bin", "filesize": len(IMAGE), "fileid": 0, "certfile": CERT_PATH,
                 "sig-sha256-ecdsa": sig}
    # The stream holds the image; DeleteStream refuses it while the update uses it.
    s = env.iot.describe_stream(streamId=stream)["streamInfo"]
    assert s["files"][0]["s3Location"] == {"bucket": BUCKET, "key": "fw/v2.bin"} and s["roleArn"] == env.role
    with pytest.raises(ClientError) as e:
        env.iot.delete_stream(streamId=stream)
    assert_client_error(e.value, "DeleteConflictException", 409, uid)

    # Without forceDeleteAWSJob the active job stays and the update is DELETE_FAILED.
    env.iot.delete_ota_update(otaUpdateId=uid, deleteStream=True)
    info = env.iot.get_ota_update(otaUpdateId=uid)["otaUpdateInfo"]
    assert info["otaUpdateStatus"] == "DELETE_FAILED" and "forceDeleteAWSJob" in info["errorInfo"]["message"]
    env.iot.delete_ota_update(otaUpdateId=uid, deleteStream=True, forceDeleteAWSJob=True)
    with pytest.raises(ClientError) as e:
        env.iot.get_ota_update(otaUpdateId=uid)
    assert_client_error(e.value, "ResourceNotFoundException", 404)
    for call, kw in ((env.iot.describe_stream, {"streamId": stream}), (env.iot.describe_job, {"jobId": job_id})):
        with pytest.raises(ClientError) as e:
            call(**kw)
        assert_client_error(e.value, "ResourceNotFoundException", 404)


def test_http_update_signed_by_a_server_profile(env):
    uid = unique("http")
    signing = {"startSigningJobParameter": {"signingProfileName": "fw-signer",
                                            "destination": {"s3Destination": {"bucket": BUCKET, "prefix": "signed/"}}}}
    create(env, uid, [s3_file(signing=signing)], protocols=("HTTP",), targets=[env.thing("ota-dev1")],
           awsJobPresignedUrlConfig={"expiresInSec": 600})
    info = wait(env, uid)
    assert info["otaUpdateStatus"] == "CREATE_COMPLETE", info
    job = env.iot.describe_job(jobId=f"AFR_OTA-{uid}")["job"]
    assert job["presignedUrlConfig"]["expiresInSec"] == 600
    f = job_document(env, f"AFR_OTA-{uid}")["afr_ota"]["files"][0]
    assert f["update_data_url"] == f"${{aws:iot:s3-presigned-url:https://s3.amazonaws.com/{BUCKET}/fw/v2.bin}}"
    assert f["auth_scheme"] == "aws.s3.presigned" and f["certfile"] == CERT_PATH
    # The server's signature verifies with the profile's certificate, as devices check it.
    env.key.public_key().verify(base64.b64decode(f["sig-sha256-ecdsa"]), IMAGE, ec.ECDSA(hashes.SHA256()))
    # The signed output object, as AWS Signer writes it.
    listing = aws_cli(env.srv, "s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", "signed/SignedImages/")
    keys = [o["Key"] for o in listing["Contents"]]
    assert f"signed/SignedImages/{uid}-0" in keys
    # HTTP only: no stream; forceDeleteAWSJob alone deletes the update and its job.
    env.iot.delete_ota_update(otaUpdateId=uid, forceDeleteAWSJob=True)
    with pytest.raises(ClientError):
        env.iot.get_ota_update(otaUpdateId=uid)


def test_update_from_a_callers_stream_keeps_the_stream(env):
    sid = unique("fw-stream")
    env.iot.create_stream(streamId=sid, roleArn=env.role,
                          files=[{"fileId": 3, "s3Location": {"bucket": BUCKET, "key": "fw/v2.bin"}}])
    uid = unique("ustream")
    create(env, uid, [{"fileName": "/fw.bin", "fileLocation": {"stream": {"streamId": sid, "fileId": 3}},
                       "codeSigning": custom(env.sign(IMAGE))}])
    info = wait(env, uid)
    assert info["otaUpdateStatus"] == "CREATE_COMPLETE", info
    doc = job_document(env, f"AFR_OTA-{uid}")["afr_ota"]
    assert doc["streamname"] == sid and doc["files"][0]["fileid"] == 3
    with pytest.raises(ClientError) as e:
        env.iot.delete_stream(streamId=sid)
    assert_client_error(e.value, "DeleteConflictException", 409)
    # deleteStream removes only streams the update created: the caller's stays, now free.
    aws_cli(env.srv, "iot", "delete-ota-update", "--ota-update-id", uid, "--delete-stream", "--force-delete-aws-job")
    env.iot.delete_stream(streamId=sid)


def test_failures_end_in_create_failed_with_the_reason(env):
    missing, badsig = unique("missing"), unique("badsig")
    create(env, missing, [s3_file(key="fw/nope.bin")])
    # Signed over other bytes; the certificate is known through the profile's path on device.
    create(env, badsig, [s3_file(signing=custom(env.sign(b"other bytes")))])
    info = wait(env, missing)
    assert info["otaUpdateStatus"] == "CREATE_FAILED" and "fw/nope.bin" in info["errorInfo"]["message"], info
    info = wait(env, badsig)
    assert info["otaUpdateStatus"] == "CREATE_FAILED", info
    assert info["errorInfo"]["code"] == "SignatureVerificationFailed" and "does not verify" in info["errorInfo"]["message"]
    # A failed update deletes without flags (no job was made).
    env.iot.delete_ota_update(otaUpdateId=missing)
    env.iot.delete_ota_update(otaUpdateId=badsig, deleteStream=True)


def test_refusals(env):
    good = [s3_file()]
    cases = [
        ({"otaUpdateId": unique("t"), "targets": [env.thing("no-such-thing")]}, "ResourceNotFoundException", 404, "no-such-thing"),
        ({"otaUpdateId": unique("t"), "targets": [env.group("no-such-group")]}, "ResourceNotFoundException", 404, "no-such-group"),
        ({"otaUpdateId": unique("t"), "targets": [f"arn:aws:iot:eu-west-1:{env.acct}:thing/ota-dev1"]}, "InvalidRequestException", 400, "not the ARN"),
        ({"otaUpdateId": unique("t"), "roleArn": f"arn:aws:iam::{env.acct}:role/no-such-role"}, "InvalidRequestException", 400, "does not exist or does not trust"),
        ({"otaUpdateId": unique("t"), "roleArn": f"arn:aws:iam::{env.acct}:role/human-role"}, "InvalidRequestException", 400, "iot.amazonaws.com"),
        ({"otaUpdateId": "a" * 57}, "InvalidRequestException", 400, "too long"),
        ({"otaUpdateId": unique("t"), "files": [s3_file(signing={"awsSignerJobId": "j-1"})]}, "InvalidRequestException", 400, "awsSignerJobId"),
        ({"otaUpdateId": unique("t"), "files": [{"fileLocation": {"stream": {"streamId": "s"}, "s3Location": {"bucket": BUCKET, "key": "k"}}}]}, "InvalidRequestException", 400, "not both"),
        ({"otaUpdateId": unique("t"), "files": [s3_file(signing={**custom(env.sign(IMAGE)), "startSigningJobParameter": {"signingProfileName": "fw-signer"}})]}, "InvalidRequestException", 400, "one of"),
        ({"otaUpdateId": unique("t"), "files": [s3_file(signing={"startSigningJobParameter": {"signingProfileName": "nope"}})]}, "ResourceNotFoundException", 404, "nope"),
        ({"otaUpdateId": unique("t"), "description": "x" * 2029}, "InvalidRequestException", 400, "description"),
        ({"otaUpdateId": unique("t"), "awsJobPresignedUrlConfig": {"expiresInSec": 7200}}, "InvalidRequestException", 400, "expiresInSec"),
    ]
    for kw, code, status, msg in cases:
        args = {"targets": [env.group("ota-fleet")], "protocols": ["MQTT"], "files": good, "roleArn": env.role, **kw}
        with pytest.raises(ClientError) as e:
            env.iot.create_ota_update(**args)
        assert_client_error(e.value, code, status, msg)
    uid = unique("dup")
    create(env, uid, good)
    with pytest.raises(ClientError) as e:
        create(env, uid, good)
    assert_client_error(e.value, "ResourceAlreadyExistsException", 409)
    wait(env, uid)
    env.iot.delete_ota_update(otaUpdateId=uid, deleteStream=True, forceDeleteAWSJob=True)


def test_list_filters_and_pages(env):
    ids = [unique("list") for _ in range(3)]
    for uid in ids:
        create(env, uid, [s3_file()], protocols=("HTTP",))
    bad = unique("listbad")
    create(env, bad, [s3_file(key="fw/absent.bin")], protocols=("HTTP",))
    for uid in ids + [bad]:
        wait(env, uid)
    seen, token = [], None
    while True:
        kw = {"maxResults": 2} | ({"nextToken": token} if token else {})
        page = env.iot.list_ota_updates(**kw)
        assert len(page["otaUpdates"]) <= 2
        seen += [u["otaUpdateId"] for u in page["otaUpdates"]]
        token = page.get("nextToken")
        if not token:
            break
    assert set(ids + [bad]) <= set(seen) and len(seen) == len(set(seen))
    assert seen.index(bad) < seen.index(ids[0]), "newest first"
    failed = [u["otaUpdateId"] for u in env.iot.list_ota_updates(otaUpdateStatus="CREATE_FAILED")["otaUpdates"]]
    assert bad in failed and not set(ids) & set(failed)
    cli = aws_cli(env.srv, "iot", "list-ota-updates", "--ota-update-status", "CREATE_COMPLETE")
    assert set(ids) <= {u["otaUpdateId"] for u in cli["otaUpdates"]}
    with pytest.raises(ClientError) as e:
        env.iot.list_ota_updates(otaUpdateStatus="SOMETIMES")
    assert_client_error(e.value, "InvalidRequestException", 400)
    for uid in ids + [bad]:
        env.iot.delete_ota_update(otaUpdateId=uid, forceDeleteAWSJob=True)


def test_records_of_the_user_and_of_the_service(env):
    uid = unique("audit")
    signing = {"startSigningJobParameter": {"signingProfileName": "fw-signer"}}
    create(env, uid, [s3_file(signing=signing)])
    assert wait(env, uid)["otaUpdateStatus"] == "CREATE_COMPLETE"
    env.iot.get_ota_update(otaUpdateId=uid)
    env.iot.delete_ota_update(otaUpdateId=uid, deleteStream=True, forceDeleteAWSJob=True)
    ct = make_client("cloudtrail", env.srv)

    def events(name):
        r = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}], MaxResults=50)
        return [json.loads(e["CloudTrailEvent"]) for e in r["Events"]]

    mine = [e for e in events("CreateOTAUpdate") if e["requestParameters"]["otaUpdateId"] == uid]
    assert mine and mine[0]["userIdentity"]["type"] == "Root"
    assert mine[0]["resources"][0]["ARN"].endswith(f":otaupdate/{uid}")
    assert any(e["requestParameters"]["otaUpdateId"] == uid for e in events("GetOTAUpdate"))
    assert any(e["requestParameters"]["otaUpdateId"] == uid for e in events("DeleteOTAUpdate"))
    for name, match in (("CreateJob", lambda e: e["requestParameters"]["jobId"] == f"AFR_OTA-{uid}"),
                        ("CreateStream", lambda e: e["requestParameters"]["streamId"].startswith("AFR_OTA-")),
                        ("StartSigningJob", lambda e: e["requestParameters"]["profileName"] == "fw-signer")):
        rec = [e for e in events(name) if e["userIdentity"]["type"] == "AssumedRole" and match(e)]
        assert rec, name
        ui = rec[0]["userIdentity"]
        assert ui["invokedBy"] == "iot.amazonaws.com", ui
        assert ui["sessionContext"]["sessionIssuer"]["arn"] == env.role, ui
        assert rec[0]["sourceIPAddress"] == "iot.amazonaws.com"


def test_restart_with_updates_in_flight_leaves_none_stuck(env):
    ids = [unique("restart") for _ in range(4)]
    for i, uid in enumerate(ids):
        create(env, uid, [s3_file(signing=custom(env.sign(IMAGE)) if i % 2 else None)], protocols=("MQTT", "HTTP"))
    env.srv.kill()
    env.srv.start()
    for uid in ids:
        info = wait(env, uid)
        assert info["otaUpdateStatus"] == "CREATE_COMPLETE", info
        doc = job_document(env, f"AFR_OTA-{uid}")["afr_ota"]
        assert doc["protocols"] == ["MQTT", "HTTP"] and doc["streamname"].startswith("AFR_OTA-")
    assert not env.iot.list_ota_updates(otaUpdateStatus="CREATE_PENDING")["otaUpdates"]
    assert not env.iot.list_ota_updates(otaUpdateStatus="CREATE_IN_PROGRESS")["otaUpdates"]
