"""GET /_otatrail/health and the request id carried by every response."""

import urllib.request

import pytest
from botocore.exceptions import ClientError

from harness import iot_client, raw_request, sts_client, unique


def test_health_is_unauthenticated_200(server):
    with urllib.request.urlopen(server.endpoint + "/_otatrail/health", timeout=5) as r:
        assert r.status == 200
        body = r.read().decode("utf-8", "replace")
        assert r.headers.get("x-amzn-RequestId"), "health response lacks x-amzn-RequestId"
    for secret in server.secrets():
        assert secret not in body, "health body reveals a secret access key"
    for acct in server.accounts:
        assert acct.root_key not in body, "health body reveals an access key id"
        for key, _ in acct.users.values():
            assert key not in body, "health body reveals an access key id"


def test_request_id_on_success_responses(server):
    iot = iot_client(server)
    r1 = iot.list_streams()
    r2 = iot.list_streams()
    id1, id2 = r1["ResponseMetadata"].get("RequestId"), r2["ResponseMetadata"].get("RequestId")
    assert id1 and id2, "IoT responses lack x-amzn-RequestId"
    assert id1 != id2, "two requests got the same request id"
    assert r1["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid") == id1

    sts = sts_client(server).get_caller_identity()
    assert sts["ResponseMetadata"].get("RequestId")
    assert sts["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid"), "STS response lacks x-amzn-RequestId header"


def test_request_id_on_error_responses(server):
    iot = iot_client(server)
    with pytest.raises(ClientError) as e:
        iot.describe_stream(streamId=unique("missing"))
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")

    bad = iot_client(server, "AKIANOSUCHKEY0000000", "x" * 40)
    with pytest.raises(ClientError) as e:
        bad.list_streams()
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")

    r = raw_request(server, "GET", "/streams", signed=False)
    assert r.header("x-amzn-RequestId"), f"unauthenticated error lacks x-amzn-RequestId: {r!r}"

    with pytest.raises(ClientError) as e:
        sts_client(server, "AKIANOSUCHKEY0000000", "x" * 40).get_caller_identity()
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")


def test_unknown_route_is_a_client_error_not_500(server):
    r = raw_request(server, "GET", "/no/such/route")
    assert 400 <= r.status < 500, f"unknown route: {r!r}"
    assert r.header("x-amzn-RequestId")
