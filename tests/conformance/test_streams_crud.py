"""CreateStream / DescribeStream / UpdateStream / DeleteStream (aws-api.md §5.1-5.5)."""

import datetime as dt
import time

import pytest
from botocore.exceptions import ClientError

from harness import (
    ACCOUNT_B,
    AwsCliError,
    assert_client_error,
    aws_cli,
    client_for,
    create_stream,
    firmware,
    iot_client,
    list_all_streams,
    put_object,
    role_arn,
    s3file,
    stream_arn,
    unique,
)


def _utcnow():
    return dt.datetime.now(dt.timezone.utc)


def _assert_recent(ts, what):
    assert isinstance(ts, dt.datetime), f"{what} is not a timestamp: {ts!r}"
    assert ts.tzinfo is not None, f"{what} has no timezone"
    delta = abs((_utcnow() - ts).total_seconds())
    assert delta < 120, f"{what}={ts.isoformat()} is {delta:.0f}s away from now"


def _files(info):
    """StreamFile list reduced to fileId/bucket/key (a server may add s3Location.version)."""
    return [
        {"fileId": f.get("fileId"), "bucket": f.get("s3Location", {}).get("bucket"), "key": f.get("s3Location", {}).get("key")}
        for f in info["files"]
    ]


def test_create_and_describe_stream(server, iot):
    sid = unique("crud")
    bucket, key = firmware(server, "fw-bucket", "firmware/v1/image.bin")
    resp = iot.create_stream(
        streamId=sid,
        description="OTA image v1",
        files=[s3file(0, bucket, key)],
        roleArn=role_arn(server.account_id),
        tags=[{"Key": "env", "Value": "test"}],
    )
    assert resp["streamId"] == sid
    assert resp["streamArn"] == stream_arn(server.account_id, sid)
    assert resp["description"] == "OTA image v1"
    assert resp["streamVersion"] == 1
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200

    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert info["streamId"] == sid
    assert info["streamArn"] == stream_arn(server.account_id, sid)
    assert info["streamVersion"] == 1
    assert info["description"] == "OTA image v1"
    assert info["roleArn"] == role_arn(server.account_id)
    assert _files(info) == [{"fileId": 0, "bucket": bucket, "key": key}]
    _assert_recent(info["createdAt"], "createdAt")
    _assert_recent(info["lastUpdatedAt"], "lastUpdatedAt")
    assert info["lastUpdatedAt"] >= info["createdAt"]


def test_create_stream_without_description_and_several_files(server, iot):
    sid = unique("multi")
    objs = [firmware(server, "fw-bucket") for _ in range(3)]
    files = [s3file(i * 10, b, k) for i, (b, k) in enumerate(objs)]
    resp = iot.create_stream(streamId=sid, files=files, roleArn=role_arn(server.account_id))
    assert resp["streamVersion"] == 1
    assert resp.get("description") in (None, ""), resp
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert _files(info) == [{"fileId": i * 10, "bucket": b, "key": k} for i, (b, k) in enumerate(objs)]
    assert info.get("description") in (None, "")


def test_unicode_description_round_trips(server, iot):
    sid = unique("uni")
    desc = "Firmware ü 固件 🚀 v2"
    assert create_stream(iot, server, sid, description=desc)["description"] == desc
    assert iot.describe_stream(streamId=sid)["streamInfo"]["description"] == desc


def test_update_stream_increments_version(server, iot):
    sid = unique("upd")
    b1, k1 = firmware(server, "fw-bucket")
    create_stream(iot, server, sid, description="v1", files=[s3file(0, b1, k1)])
    before = iot.describe_stream(streamId=sid)["streamInfo"]
    time.sleep(1.1)  # so that a second-resolution lastUpdatedAt must move

    r = iot.update_stream(streamId=sid, description="v2")
    assert r["streamId"] == sid
    assert r["streamArn"] == stream_arn(server.account_id, sid)
    assert r["description"] == "v2"
    assert r["streamVersion"] == 2
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert info["streamVersion"] == 2
    assert info["description"] == "v2"
    assert _files(info) == [{"fileId": 0, "bucket": b1, "key": k1}], "files changed by a description-only update"
    assert info["roleArn"] == role_arn(server.account_id)
    assert info["createdAt"] == before["createdAt"], "UpdateStream changed createdAt"
    assert info["lastUpdatedAt"] > before["lastUpdatedAt"], "UpdateStream did not move lastUpdatedAt"

    b2, k2 = firmware(server, "fw-bucket-2")
    r = iot.update_stream(streamId=sid, files=[s3file(1, b2, k2), s3file(2, b1, k1)])
    assert r["streamVersion"] == 3
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert info["streamVersion"] == 3
    assert info["description"] == "v2"
    assert _files(info) == [{"fileId": 1, "bucket": b2, "key": k2}, {"fileId": 2, "bucket": b1, "key": k1}]

    new_role = role_arn(server.account_id, "another-ota-role")
    r = iot.update_stream(streamId=sid, roleArn=new_role)
    assert r["streamVersion"] == 4
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert info["roleArn"] == new_role
    assert info["streamVersion"] == 4
    assert info["createdAt"] == before["createdAt"]

    summary = [s for s in list_all_streams(iot) if s["streamId"] == sid]
    assert len(summary) == 1
    assert summary[0]["streamVersion"] == 4
    assert summary[0]["description"] == "v2"
    assert summary[0]["streamArn"] == stream_arn(server.account_id, sid)


def test_update_stream_with_missing_object_changes_nothing(server, iot):
    sid = unique("updbad")
    create_stream(iot, server, sid, description="keep")
    with pytest.raises(ClientError) as e:
        iot.update_stream(streamId=sid, description="changed", files=[s3file(0, "fw-bucket", "no/such/object.bin")])
    assert_client_error(e.value, "InvalidRequestException", 400)
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert info["streamVersion"] == 1
    assert info["description"] == "keep"


def test_update_missing_stream_is_404(iot):
    with pytest.raises(ClientError) as e:
        iot.update_stream(streamId=unique("nosuch"), description="x")
    assert_client_error(e.value, "ResourceNotFoundException", 404)


def test_delete_stream(server, iot):
    sid = unique("del")
    create_stream(iot, server, sid)
    r = iot.delete_stream(streamId=sid)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as e:
        iot.describe_stream(streamId=sid)
    assert_client_error(e.value, "ResourceNotFoundException", 404)
    assert sid not in {s["streamId"] for s in list_all_streams(iot)}
    with pytest.raises(ClientError) as e:
        iot.delete_stream(streamId=sid)
    assert_client_error(e.value, "ResourceNotFoundException", 404)
    # The id can be used again, starting over at version 1.
    assert create_stream(iot, server, sid)["streamVersion"] == 1


def test_describe_missing_stream_is_404(iot):
    with pytest.raises(ClientError) as e:
        iot.describe_stream(streamId=unique("nosuch"))
    assert_client_error(e.value, "ResourceNotFoundException", 404)


def test_duplicate_create_is_409_with_resource_id_and_arn(server, iot):
    sid = unique("dup")
    create_stream(iot, server, sid, description="first")
    with pytest.raises(ClientError) as e:
        create_stream(iot, server, sid, description="second")
    resp = assert_client_error(e.value, "ResourceAlreadyExistsException", 409)
    assert resp.get("resourceId") == sid, f"resourceId missing or wrong: {resp}"
    assert resp.get("resourceArn") == stream_arn(server.account_id, sid), f"resourceArn missing or wrong: {resp}"
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert info["description"] == "first"
    assert info["streamVersion"] == 1


def test_missing_object_is_invalid_request(server, iot):
    put_object(server, "fw-bucket", "exists.bin")
    sid = unique("noobj")
    with pytest.raises(ClientError) as e:
        create_stream(iot, server, sid, files=[s3file(0, "fw-bucket", "does/not/exist.bin")])
    assert_client_error(e.value, "InvalidRequestException", 400)
    with pytest.raises(ClientError) as e:
        iot.describe_stream(streamId=sid)
    assert_client_error(e.value, "ResourceNotFoundException", 404)


def test_missing_bucket_is_invalid_request(iot, server):
    with pytest.raises(ClientError) as e:
        create_stream(iot, server, unique("nobkt"), files=[s3file(0, "no-such-bucket-" + unique("b"), "image.bin")])
    assert_client_error(e.value, "InvalidRequestException", 400)


def test_one_missing_object_among_several_rejects_the_stream(server, iot):
    b, k = firmware(server, "fw-bucket")
    sid = unique("partial")
    with pytest.raises(ClientError) as e:
        create_stream(iot, server, sid, files=[s3file(0, b, k), s3file(1, b, "missing.bin")])
    assert_client_error(e.value, "InvalidRequestException", 400)
    with pytest.raises(ClientError):
        iot.describe_stream(streamId=sid)


@pytest.mark.parametrize(
    "bucket,key",
    [("fw-bucket", "../../outside.bin"), ("..", "outside.bin"), ("fw-bucket", "/etc/hostname")],
    ids=["key-dotdot", "bucket-dotdot", "absolute-key"],
)
def test_objects_outside_the_bucket_are_not_reachable(server, iot, bucket, key):
    (server.data_dir / "outside.bin").write_bytes(b"not an object")
    put_object(server, "fw-bucket", "inside.bin")
    with pytest.raises(ClientError) as e:
        create_stream(iot, server, unique("escape"), files=[s3file(0, bucket, key)])
    assert_client_error(e.value, "InvalidRequestException", 400)


def test_file_without_location_is_invalid_request(server, iot):
    with pytest.raises(ClientError) as e:
        create_stream(iot, server, unique("noloc"), files=[{"fileId": 0}])
    assert_client_error(e.value, "InvalidRequestException", 400)


def test_streams_are_scoped_to_their_account(server, iot):
    sid = unique("acct")
    create_stream(iot, server, sid, description="account A")
    iot_b = client_for("iot", server, server.root(ACCOUNT_B))
    with pytest.raises(ClientError) as e:
        iot_b.describe_stream(streamId=sid)
    assert_client_error(e.value, "ResourceNotFoundException", 404)
    assert sid not in {s["streamId"] for s in list_all_streams(iot_b)}
    # Buckets belong to accounts: B cannot build a stream from A's firmware bucket ...
    a_bucket, a_key = firmware(server)
    with pytest.raises(ClientError) as e:
        create_stream(iot_b, server, sid, files=[s3file(0, a_bucket, a_key)], account_id=ACCOUNT_B.id)
    assert_client_error(e.value, "InvalidRequestException", 400)
    # ... but the same id is free in account B, with B's ARN, from B's own bucket.
    b_bucket, b_key = f"fw-{ACCOUNT_B.id}", "images/b.bin"
    put_object(server, b_bucket, b_key, principal=server.root(ACCOUNT_B))
    r = create_stream(iot_b, server, sid, description="account B", files=[s3file(0, b_bucket, b_key)], account_id=ACCOUNT_B.id)
    assert r["streamArn"] == stream_arn(ACCOUNT_B.id, sid)
    assert iot.describe_stream(streamId=sid)["streamInfo"]["description"] == "account A"
    iot_b.delete_stream(streamId=sid)
    assert iot.describe_stream(streamId=sid)["streamInfo"]["streamVersion"] == 1


def test_cli_stream_lifecycle(server):
    sid = unique("cli")
    bucket, key = firmware(server, "fw-bucket")
    files = f'[{{"fileId":0,"s3Location":{{"bucket":"{bucket}","key":"{key}"}}}}]'
    out = aws_cli(server, "iot", "create-stream", "--stream-id", sid, "--description", "from the cli",
                  "--files", files, "--role-arn", role_arn(server.account_id))
    assert out["streamId"] == sid
    assert out["streamVersion"] == 1
    assert out["streamArn"] == stream_arn(server.account_id, sid)

    info = aws_cli(server, "iot", "describe-stream", "--stream-id", sid)["streamInfo"]
    assert info["description"] == "from the cli"
    assert info["files"][0]["s3Location"]["key"] == key
    assert "createdAt" in info and "lastUpdatedAt" in info

    out = aws_cli(server, "iot", "update-stream", "--stream-id", sid, "--description", "updated")
    assert out["streamVersion"] == 2

    listed = aws_cli(server, "iot", "list-streams")["streams"]
    assert [s["streamVersion"] for s in listed if s["streamId"] == sid] == [2]

    aws_cli(server, "iot", "delete-stream", "--stream-id", sid)
    with pytest.raises(AwsCliError) as e:
        aws_cli(server, "iot", "describe-stream", "--stream-id", sid)
    assert "ResourceNotFoundException" in e.value.stderr
