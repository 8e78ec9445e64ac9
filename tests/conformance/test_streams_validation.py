"""Server-side validation of CreateStream/UpdateStream/ListStreams inputs.

botocore only checks minimums client-side (aws-api.md §1.3), so every value below
reaches the server, which must answer InvalidRequestException / HTTP 400 for values out
of the model's range and accept the boundary values.
"""

import pytest
from botocore.exceptions import ClientError

from harness import assert_client_error, create_stream, firmware, role_arn, s3file, unique


def _expect_invalid(call, *args, **kw):
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    return assert_client_error(e.value, "InvalidRequestException", 400)


def _assert_absent(iot, sid):
    with pytest.raises(ClientError) as e:
        iot.describe_stream(streamId=sid)
    assert_client_error(e.value, "ResourceNotFoundException", 404)


# -- description ------------------------------------------------------------------------


def test_description_of_2028_chars_is_accepted(server, iot):
    sid = unique("d2028")
    desc = "d" * 2028
    assert create_stream(iot, server, sid, description=desc)["description"] == desc
    assert iot.describe_stream(streamId=sid)["streamInfo"]["description"] == desc


def test_description_of_2029_chars_is_rejected(server, iot):
    sid = unique("d2029")
    _expect_invalid(create_stream, iot, server, sid, description="d" * 2029)
    _assert_absent(iot, sid)


@pytest.mark.parametrize("desc", ["bell\x07char", "line1\nline2", "nul\x00char", "tab\tchar"],
                         ids=["bel", "newline", "nul", "tab"])
def test_description_with_control_character_is_rejected(server, iot, desc):
    sid = unique("dctl")
    _expect_invalid(create_stream, iot, server, sid, description=desc)
    _assert_absent(iot, sid)


def test_update_description_is_validated(server, iot):
    sid = unique("dupd")
    create_stream(iot, server, sid, description="ok")
    _expect_invalid(iot.update_stream, streamId=sid, description="d" * 2029)
    _expect_invalid(iot.update_stream, streamId=sid, description="ctl\x01")
    info = iot.describe_stream(streamId=sid)["streamInfo"]
    assert (info["streamVersion"], info["description"]) == (1, "ok")


# -- streamId ---------------------------------------------------------------------------


def test_stream_id_of_128_chars_is_accepted(server, iot):
    sid = unique("long").ljust(128, "a")
    assert len(sid) == 128
    assert create_stream(iot, server, sid)["streamId"] == sid
    assert iot.describe_stream(streamId=sid)["streamInfo"]["streamId"] == sid


def test_stream_id_of_129_chars_is_rejected(server, iot):
    sid = unique("long").ljust(129, "a")
    _expect_invalid(create_stream, iot, server, sid)


@pytest.mark.parametrize("sid", ["bad id", "bad.id", "bad:id", "bad!id", "bäd"], ids=["space", "dot", "colon", "bang", "umlaut"])
def test_stream_id_outside_pattern_is_rejected(server, iot, sid):
    # boto3 percent-encodes the path label (bad%20id); the server must decode, then reject.
    _expect_invalid(create_stream, iot, server, sid)


def test_stream_id_with_allowed_punctuation_is_accepted(server, iot):
    sid = unique("Ok_ID-")
    assert create_stream(iot, server, sid)["streamId"] == sid


# -- files ------------------------------------------------------------------------------


def test_file_id_255_is_accepted_and_256_rejected(server, iot):
    b, k = firmware(server)
    sid = unique("f255")
    create_stream(iot, server, sid, files=[s3file(255, b, k)])
    assert iot.describe_stream(streamId=sid)["streamInfo"]["files"][0]["fileId"] == 255
    sid = unique("f256")
    _expect_invalid(create_stream, iot, server, sid, files=[s3file(256, b, k)])
    _assert_absent(iot, sid)


def test_50_files_accepted_51_rejected(server, iot):
    b, k = firmware(server)
    sid = unique("f50")
    create_stream(iot, server, sid, files=[s3file(i, b, k) for i in range(50)])
    assert len(iot.describe_stream(streamId=sid)["streamInfo"]["files"]) == 50
    sid = unique("f51")
    _expect_invalid(create_stream, iot, server, sid, files=[s3file(i, b, k) for i in range(51)])
    _assert_absent(iot, sid)


def test_update_with_51_files_rejected(server, iot):
    b, k = firmware(server)
    sid = unique("u51")
    create_stream(iot, server, sid, files=[s3file(0, b, k)])
    _expect_invalid(iot.update_stream, streamId=sid, files=[s3file(i, b, k) for i in range(51)])
    assert iot.describe_stream(streamId=sid)["streamInfo"]["streamVersion"] == 1


def test_duplicate_file_ids_rejected(server, iot):
    b, k = firmware(server)
    b2, k2 = firmware(server)
    sid = unique("fdup")
    _expect_invalid(create_stream, iot, server, sid, files=[s3file(7, b, k), s3file(7, b2, k2)])
    _assert_absent(iot, sid)


def test_update_with_duplicate_file_ids_rejected(server, iot):
    b, k = firmware(server)
    sid = unique("udup")
    create_stream(iot, server, sid, files=[s3file(0, b, k)])
    _expect_invalid(iot.update_stream, streamId=sid, files=[s3file(3, b, k), s3file(3, b, k)])


# -- roleArn and tags ---------------------------------------------------------------------


def test_role_arn_longer_than_2048_rejected(server, iot):
    prefix = role_arn(server.account_id, "")
    long_arn = prefix + "r" * (2049 - len(prefix))
    assert len(long_arn) == 2049
    sid = unique("role")
    _expect_invalid(create_stream, iot, server, sid, roleArn=long_arn)
    _assert_absent(iot, sid)


def test_update_role_arn_longer_than_2048_rejected(server, iot):
    sid = unique("urole")
    create_stream(iot, server, sid)
    prefix = role_arn(server.account_id, "")
    _expect_invalid(iot.update_stream, streamId=sid, roleArn=prefix + "r" * (2049 - len(prefix)))


def test_tag_key_of_128_chars_accepted(server, iot):
    sid = unique("tag128")
    create_stream(iot, server, sid, tags=[{"Key": "k" * 128, "Value": "v"}])


def test_tag_key_too_long_rejected(server, iot):
    sid = unique("tag129")
    _expect_invalid(create_stream, iot, server, sid, tags=[{"Key": "k" * 129, "Value": "v"}])
    _assert_absent(iot, sid)


def test_tag_value_too_long_rejected(server, iot):
    sid = unique("tagv")
    _expect_invalid(create_stream, iot, server, sid, tags=[{"Key": "k", "Value": "v" * 257}])


# -- ListStreams ------------------------------------------------------------------------


def test_list_streams_max_results_250_accepted_251_rejected(iot):
    r = iot.list_streams(maxResults=250)
    assert isinstance(r.get("streams"), list)
    _expect_invalid(iot.list_streams, maxResults=251)
