"""600 streams listed through the aws CLI's auto-pagination (its own server: exactly 600)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import aws_cli, create_stream, firmware, iot_client, list_all_streams, s3file, unique

N = 600


@pytest.fixture(scope="module")
def bulk(server):
    b, k = firmware(server, "bulk-bucket")
    tag = unique("bulk")
    ids = [f"{tag}-{i:04d}" for i in range(N)]

    def work(chunk):
        iot = iot_client(server)  # one client per thread
        for sid in chunk:
            create_stream(iot, server, sid, description=f"bulk {sid}", files=[s3file(0, b, k)])

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, [ids[i::4] for i in range(4)]))
    return ids


def _ids(out):
    return [s["streamId"] for s in out["streams"]]


def test_boto3_sees_all_600(server, bulk):
    iot = iot_client(server)
    ids = [s["streamId"] for s in list_all_streams(iot)]
    assert len(ids) == N and set(ids) == set(bulk)
    first = iot.list_streams()
    assert 0 < len(first["streams"]) <= 250
    assert first.get("nextToken"), "600 streams but the default page has no nextToken"
    page = iot.list_streams(maxResults=250)
    assert len(page["streams"]) == 250 and page.get("nextToken")


def test_cli_auto_paginates_all_600(server, bulk):
    ids = _ids(aws_cli(server, "iot", "list-streams"))
    assert len(ids) == N, f"aws iot list-streams returned {len(ids)} streams, expected {N}"
    assert len(set(ids)) == N, "aws iot list-streams returned duplicates"
    assert set(ids) == set(bulk)


def test_cli_page_size_50(server, bulk):
    ids = _ids(aws_cli(server, "iot", "list-streams", "--page-size", "50"))
    assert len(ids) == N and len(set(ids)) == N and set(ids) == set(bulk)


def test_cli_descending_is_reverse(server, bulk):
    asc = _ids(aws_cli(server, "iot", "list-streams", "--ascending-order"))
    desc = _ids(aws_cli(server, "iot", "list-streams", "--no-ascending-order", "--page-size", "100"))
    assert len(asc) == N
    assert desc == list(reversed(asc))


@pytest.mark.parametrize("page_size", [None, "50"], ids=["default-page", "page-size-50"])
def test_cli_max_items_and_starting_token(server, bulk, page_size):
    seen = []
    token = None
    calls = 0
    while True:
        args = ["iot", "list-streams", "--max-items", "120"]
        if page_size:
            args += ["--page-size", page_size]
        if token:
            args += ["--starting-token", token]
        out = aws_cli(server, *args)
        calls += 1
        got = _ids(out)
        token = out.get("NextToken")
        if token:
            assert len(got) == 120, f"call {calls}: {len(got)} items with --max-items 120"
        seen += got
        if not token:
            break
        assert calls < 20, "the CLI never stopped returning NextToken"
    assert calls == 5, f"600 items with --max-items 120 took {calls} calls"
    assert len(seen) == N and len(set(seen)) == N and set(seen) == set(bulk)
