"""ListStreams ordering and paging (aws-api.md §4, §5.3)."""

import pytest
from botocore.exceptions import ClientError

from harness import assert_client_error, create_stream, firmware, list_all_streams, s3file, stream_arn, unique


@pytest.fixture(scope="module")
def base_streams(server, iot):
    """30 streams created up front (the module's server may hold others too)."""
    b, k = firmware(server, "list-bucket")
    tag = unique("ls")
    ids = []
    for i in range(30):
        sid = f"{tag}-{i:03d}"
        create_stream(iot, server, sid, description=f"stream {i}", files=[s3file(0, b, k)])
        ids.append(sid)
    return ids


def test_list_contains_summaries(server, iot, base_streams):
    listed = {s["streamId"]: s for s in list_all_streams(iot)}
    for i, sid in enumerate(base_streams):
        s = listed.get(sid)
        assert s is not None, f"{sid} missing from ListStreams"
        assert s["streamArn"] == stream_arn(server.account_id, sid)
        assert s["streamVersion"] == 1
        assert s["description"] == f"stream {i}"
        assert "files" not in s, "StreamSummary has no files member"


def test_no_duplicates_and_exact_page_sizes(iot, base_streams):
    seen = []
    token = None
    pages = 0
    total = len(list_all_streams(iot))
    while True:
        kw = {"maxResults": 7}
        if token:
            kw["nextToken"] = token
        r = iot.list_streams(**kw)
        page = r["streams"]
        pages += 1
        token = r.get("nextToken")
        if token:
            assert len(page) == 7, f"non-final page {pages} has {len(page)} streams, maxResults=7"
        else:
            assert 0 < len(page) <= 7
        seen += [s["streamId"] for s in page]
        if not token:
            break
        assert pages < 1000
    assert len(seen) == len(set(seen)) == total
    assert pages == -(-total // 7), f"{total} streams in {pages} pages of 7"


def test_ascending_and_descending_are_reverse(iot, base_streams):
    asc = [s["streamId"] for s in list_all_streams(iot, ascending=True)]
    desc = [s["streamId"] for s in list_all_streams(iot, ascending=False)]
    assert len(asc) == len(set(asc)) >= len(base_streams)
    assert desc == list(reversed(asc)), "isAscendingOrder=false is not the reverse of isAscendingOrder=true"
    # The same holds when paging.
    asc_paged = [s["streamId"] for s in list_all_streams(iot, page_size=4, ascending=True)]
    desc_paged = [s["streamId"] for s in list_all_streams(iot, page_size=4, ascending=False)]
    assert asc_paged == asc
    assert desc_paged == desc


def test_ascending_query_parameter_on_the_wire(server, base_streams):
    """The wire name is isAscendingOrder (botocore maps ascendingOrder to it)."""
    from harness import raw_request

    asc = raw_request(server, "GET", "/streams", query={"isAscendingOrder": "true", "maxResults": "250"}).json()
    desc = raw_request(server, "GET", "/streams", query={"isAscendingOrder": "false", "maxResults": "250"}).json()
    a = [s["streamId"] for s in asc["streams"]]
    d = [s["streamId"] for s in desc["streams"]]
    assert a and d == list(reversed(a))


@pytest.mark.parametrize("ascending", [None, True, False], ids=["default", "ascending", "descending"])
def test_paging_survives_creates_and_deletes(server, iot, base_streams, ascending):
    b, k = firmware(server, "list-bucket")
    tag = unique("churn")
    # Streams that live through the whole listing, and streams deleted during it.
    stable = [f"{tag}-keep-{i:02d}" for i in range(20)]
    victims = [f"{tag}-gone-{i:02d}" for i in range(6)]
    for sid in stable + victims:
        create_stream(iot, server, sid, files=[s3file(0, b, k)])
    created_during = []
    deleted_at_page = {}

    seen_pages = []
    token = None
    page_no = 0
    while True:
        kw = {"maxResults": 5}
        if ascending is not None:
            kw["ascendingOrder"] = ascending
        if token:
            kw["nextToken"] = token
        r = iot.list_streams(**kw)
        seen_pages.append([s["streamId"] for s in r["streams"]])
        token = r.get("nextToken")
        if not token:
            break
        page_no += 1
        assert page_no < 500
        # Between pages: one new stream, and one deleted stream (while victims last).
        new_id = f"{tag}-new-{page_no:03d}"
        create_stream(iot, server, new_id, files=[s3file(0, b, k)])
        created_during.append(new_id)
        if page_no <= len(victims):
            victim = victims[page_no - 1]
            iot.delete_stream(streamId=victim)
            deleted_at_page[victim] = page_no  # gone for pages fetched after page `page_no`

    seen = [sid for page in seen_pages for sid in page]
    dups = {sid for sid in seen if seen.count(sid) > 1}
    assert not dups, f"streams listed more than once: {sorted(dups)}"
    missing = [sid for sid in stable + base_streams if sid not in seen]
    assert not missing, f"streams that existed throughout were not listed: {missing}"
    for victim, page in deleted_at_page.items():
        for later in seen_pages[page:]:
            assert victim not in later, f"{victim} listed after it was deleted"

    for sid in stable + created_during:
        iot.delete_stream(streamId=sid)


@pytest.mark.parametrize("token", ["garbage", "AAAA", "eyJvZmZzZXQiOiAtMX0="], ids=["garbage", "base64ish", "json-ish"])
def test_invalid_next_token_is_rejected(iot, base_streams, token):
    with pytest.raises(ClientError) as e:
        iot.list_streams(nextToken=token)
    assert_client_error(e.value, "InvalidRequestException", 400)


def test_list_streams_max_results_0_rejected_on_the_wire(server):
    from harness import raw_request, rest_json_error_code

    r = raw_request(server, "GET", "/streams", query={"maxResults": "0"})
    assert r.status == 400, r
    assert rest_json_error_code(r.status, r.headers, r.body) == "InvalidRequestException"


def test_boto3_paginator(iot, base_streams):
    pages = list(iot.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 6}))
    ids = [s["streamId"] for p in pages for s in p["streams"]]
    assert len(ids) == len(set(ids))
    assert set(base_streams) <= set(ids)
    assert all(len(p["streams"]) <= 6 for p in pages)
