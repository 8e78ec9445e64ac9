"""Error wire format of rest-json and json 1.1, and robustness against bad bodies
(aws-api.md §2, §7)."""

import json
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from harness import (
    clean_code,
    create_stream,
    firmware,
    iot_client,
    raw_request,
    rest_json_error_code,
    role_arn,
    s3file,
    send_large_body,
    sign_request,
    unique,
)

CLOUDTRAIL_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101"


def _assert_rest_json_error(r, code, status):
    assert r.status == status, f"expected HTTP {status} {code}, got {r!r}"
    assert r.header("x-amzn-ErrorType") is not None, f"no x-amzn-ErrorType header: {r!r}"
    assert clean_code(r.header("x-amzn-ErrorType")) == code, f"x-amzn-ErrorType={r.header('x-amzn-ErrorType')!r}, expected {code}"
    assert r.header("x-amzn-RequestId"), f"no x-amzn-RequestId: {r!r}"
    ctype = r.header("Content-Type") or ""
    assert "json" in ctype, f"error Content-Type is {ctype!r}"
    doc = r.json()
    assert isinstance(doc, dict)
    assert isinstance(doc.get("message"), str) and doc["message"], f"body lacks a lowercase 'message': {doc}"
    return doc


def test_not_found_wire_format(server):
    r = raw_request(server, "GET", f"/streams/{unique('missing')}")
    _assert_rest_json_error(r, "ResourceNotFoundException", 404)


def test_already_exists_wire_format(server, iot):
    sid = unique("dupwire")
    create_stream(iot, server, sid)
    b, k = firmware(server)
    body = json.dumps({"files": [s3file(0, b, k)], "roleArn": role_arn(server.account_id)}).encode()
    r = raw_request(server, "POST", f"/streams/{sid}", body=body, headers={"Content-Type": "application/json"})
    doc = _assert_rest_json_error(r, "ResourceAlreadyExistsException", 409)
    assert doc.get("resourceId") == sid
    assert doc.get("resourceArn") == f"arn:aws:iot:us-east-1:{server.account_id}:stream/{sid}"


def test_invalid_request_wire_format(server):
    r = raw_request(server, "GET", "/streams", query={"maxResults": "251"})
    _assert_rest_json_error(r, "InvalidRequestException", 400)


def test_boto3_sees_the_error_type_header(server, iot):
    with pytest.raises(ClientError) as e:
        iot.describe_stream(streamId=unique("missing"))
    hdrs = e.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert clean_code(hdrs.get("x-amzn-errortype")) == "ResourceNotFoundException", hdrs


@pytest.mark.parametrize(
    "key,secret,code",
    [
        ("AKIANOSUCHKEY0000000", "nope/nope/nope", "UnrecognizedClientException"),
        ("root", "wrong/secret/0000000000000000000000000", "InvalidSignatureException"),
    ],
    ids=["unknown-key", "wrong-secret"],
)
def test_auth_error_wire_format(server, key, secret, code):
    if key == "root":
        key = server.root().access_key_id
    r = raw_request(server, "GET", "/streams", key=key, secret=secret)
    _assert_rest_json_error(r, code, 403)


def test_missing_authentication_token(server):
    r = raw_request(server, "GET", "/streams", signed=False)
    assert r.status == 403, r
    assert rest_json_error_code(r.status, r.headers, r.body) == "MissingAuthenticationTokenException", r
    assert r.header("x-amzn-RequestId")


def test_missing_authentication_token_on_describe(server, iot):
    sid = unique("noauth")
    create_stream(iot, server, sid)
    r = raw_request(server, "GET", f"/streams/{sid}", signed=False)
    assert r.status == 403, r
    assert rest_json_error_code(r.status, r.headers, r.body) == "MissingAuthenticationTokenException", r
    assert b"roleArn" not in r.body, "an unauthenticated request got the stream's details"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"files": "not-a-list", "roleArn": "arn:aws:iam::111122223333:role/r"}', b"", b"\xff\xfe\x00garbage"],
    ids=["broken-json", "json-array", "wrong-type", "empty", "binary"],
)
def test_malformed_create_body_is_400(server, body):
    sid = unique("badjson")
    r = raw_request(server, "POST", f"/streams/{sid}", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 400, f"malformed body answered {r!r}"
    assert r.header("x-amzn-RequestId")
    code = rest_json_error_code(r.status, r.headers, r.body)
    assert code and code != "400", f"no error code in {r!r}"
    doc = r.json()
    assert isinstance(doc.get("message"), str) and doc["message"].strip(), f"no clear message: {r!r}"
    assert raw_request(server, "GET", f"/streams/{sid}").status == 404


def test_oversized_body_is_rejected_without_500_or_hang(server):
    sid = unique("huge")
    b, k = firmware(server)
    doc = {"files": [s3file(0, b, k)], "roleArn": role_arn(server.account_id), "description": "x" * (10 * 1024 * 1024)}
    body = json.dumps(doc).encode()
    target, headers = sign_request(server, "POST", f"/streams/{sid}", body=body, headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    status, raw, note = send_large_body(server, "POST", target, headers, body, timeout=30)
    elapsed = time.monotonic() - t0
    assert status is not None, f"no HTTP response to a 10 MB body after {elapsed:.1f}s ({note}): {raw[:300]!r}"
    assert 400 <= status < 500, f"10 MB body answered HTTP {status} ({note}): {raw[:500]!r}"
    # The server is still healthy and did not create the stream.
    with urllib.request.urlopen(server.endpoint + "/_otatrail/health", timeout=5) as r:
        assert r.status == 200
    assert raw_request(server, "GET", f"/streams/{sid}").status == 404


def test_cloudtrail_unknown_operation(server):
    r = raw_request(
        server, "POST", "/", body=b"{}", service="cloudtrail",
        headers={"X-Amz-Target": f"{CLOUDTRAIL_PREFIX}.NoSuchOp", "Content-Type": "application/x-amz-json-1.1"},
    )
    assert r.status == 400, r
    doc = r.json()
    assert clean_code(doc.get("__type")) == "UnknownOperationException", f"json 1.1 error needs __type: {doc}"
    assert r.header("x-amzn-RequestId")


def test_server_survives_the_bad_requests(server):
    iot = iot_client(server)
    sid = unique("after")
    assert create_stream(iot, server, sid)["streamVersion"] == 1
