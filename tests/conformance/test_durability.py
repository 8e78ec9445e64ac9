"""Streams survive a restart, both a graceful one (SIGTERM) and a crash (SIGKILL)."""

import signal

import pytest
from botocore.exceptions import ClientError

from harness import assert_client_error, create_stream, firmware, iot_client, list_all_streams, s3file, unique


@pytest.fixture
def durable_server(server_factory):
    srv = server_factory("configured", name="durable")
    yield srv
    srv.stop()


def _snapshot(iot, ids):
    return {sid: iot.describe_stream(streamId=sid)["streamInfo"] for sid in ids}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_streams_survive_restart(durable_server, sig):
    srv = durable_server
    iot = iot_client(srv)
    b, k = firmware(srv, "durable-bucket")
    b2, k2 = firmware(srv, "durable-bucket")
    created = [unique("dur") for _ in range(5)]
    for i, sid in enumerate(created):
        create_stream(iot, srv, sid, description=f"durable {i}", files=[s3file(i, b, k)])
    updated, deleted = created[0], created[1]
    iot.update_stream(streamId=updated, description="updated once")
    iot.update_stream(streamId=updated, files=[s3file(9, b2, k2)])
    iot.delete_stream(streamId=deleted)
    kept = [sid for sid in created if sid != deleted]
    before = _snapshot(iot, kept)
    # Stop right after the last acknowledged write.
    rc, needed_kill = srv.stop(sig)
    if sig == signal.SIGTERM:
        assert not needed_kill, "otatrail did not exit within 5 s of SIGTERM"
    srv.start(srv.port)

    iot = iot_client(srv)
    after = _snapshot(iot, kept)
    for sid in kept:
        for field in ("streamId", "streamArn", "streamVersion", "description", "files", "roleArn", "createdAt", "lastUpdatedAt"):
            assert after[sid].get(field) == before[sid].get(field), f"{sid}.{field} changed across restart"
    assert after[updated]["streamVersion"] == 3
    with pytest.raises(ClientError) as e:
        iot.describe_stream(streamId=deleted)
    assert_client_error(e.value, "ResourceNotFoundException", 404)
    assert sorted(s["streamId"] for s in list_all_streams(iot)) == sorted(kept)

    # State after the restart keeps working: duplicates are still detected, versions go on.
    with pytest.raises(ClientError) as e:
        create_stream(iot, srv, kept[-1])
    assert_client_error(e.value, "ResourceAlreadyExistsException", 409)
    assert iot.update_stream(streamId=updated, description="after restart")["streamVersion"] == 4
    assert create_stream(iot, srv, deleted)["streamVersion"] == 1


def test_many_writes_then_sigkill(durable_server):
    srv = durable_server
    iot = iot_client(srv)
    b, k = firmware(srv, "durable-bucket")
    ids = [f"{unique('burst')}" for _ in range(40)]
    for sid in ids:
        create_stream(iot, srv, sid, files=[s3file(0, b, k)])
    for sid in ids[::2]:
        iot.update_stream(streamId=sid, description="bumped")
    srv.kill()
    srv.start(srv.port)
    iot = iot_client(srv)
    listed = {s["streamId"]: s for s in list_all_streams(iot)}
    assert set(listed) == set(ids)
    for i, sid in enumerate(ids):
        assert listed[sid]["streamVersion"] == (2 if i % 2 == 0 else 1), sid
