"""Things and thing groups (aws-api.md §8): CreateThing, DescribeThing, ListThings, UpdateThing,
DeleteThing, CreateThingGroup, DescribeThingGroup, UpdateThingGroup, ListThingGroups,
DeleteThingGroup, AddThingToThingGroup, RemoveThingFromThingGroup, ListThingsInThingGroup and
ListThingGroupsForThing, with boto3 and the aws CLI; their errors (400/404/409 and messages),
paging, recursion, attribute filters, versions, account and region scoping, and their records
in LookupEvents.

Every test names its resources uniquely (the module shares one server), and listings are
narrowed with a unique attribute, thing type, name prefix or region.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import (
    ACCOUNT_B,
    REGION,
    assert_client_error,
    aws_cli,
    client_config,
    make_client,
    raw_request,
    unique,
)


def thing_arn(account: str, name: str, region: str = REGION) -> str:
    return f"arn:aws:iot:{region}:{account}:thing/{name}"


def group_arn(account: str, name: str, region: str = REGION) -> str:
    return f"arn:aws:iot:{region}:{account}:thinggroup/{name}"


def client(server, service: str = "iot", region: str = REGION, account=None, validate: bool = True):
    """A boto3 client of `account` (default: the first account's root) in `region`."""
    p = server.root(account) if account else server.root()
    return boto3.session.Session().client(
        service,
        region_name=region,
        endpoint_url=server.endpoint,
        aws_access_key_id=p.access_key_id,
        aws_secret_access_key=p.secret_access_key,
        config=client_config(parameter_validation=validate),
    )


def error(call, code: str, status: int, message_contains: str | None = None, **kw) -> dict:
    with pytest.raises(ClientError) as e:
        call(**kw)
    return assert_client_error(e.value, code, status, message_contains)


def invalid(call, message_contains: str | None = None, **kw) -> dict:
    return error(call, "InvalidRequestException", 400, message_contains, **kw)


def not_found(call, message_contains: str | None = None, **kw) -> dict:
    return error(call, "ResourceNotFoundException", 404, message_contains, **kw)


def conflict(call, message_contains: str | None = None, **kw) -> dict:
    return error(call, "VersionConflictException", 409, message_contains, **kw)


def payload(attrs: dict, merge: bool | None = None) -> dict:
    p = {"attributes": attrs}
    if merge is not None:
        p["merge"] = merge
    return p


def all_pages(call, key: str, **kw) -> tuple[list, int]:
    """Every item of a listing, following nextToken by hand; also the number of pages."""
    out, token, pages = [], None, 0
    for _ in range(1000):
        resp = call(**kw, **({"nextToken": token} if token else {}))
        pages += 1
        out += resp.get(key, [])
        token = resp.get("nextToken")
        if not token:
            return out, pages
    raise AssertionError(f"{key}: nextToken never stopped")


def names(groups: list[dict]) -> list[str]:
    return [g["groupName"] for g in groups]


@pytest.fixture(scope="module")
def iot_b(server):
    return client(server, account=ACCOUNT_B)


@pytest.fixture(scope="module")
def iot_nv(server):
    """No client-side validation, so that values below the model's minimums reach the server."""
    return client(server, validate=False)


# ======================================================================================
# Things
# ======================================================================================


def test_create_and_describe_thing(server, iot):
    name = unique("bulb")
    out = iot.create_thing(thingName=name, thingTypeName="LightBulb",
                           attributePayload=payload({"wattage": "75", "model": "123"}))
    assert out["thingName"] == name
    assert out["thingArn"] == thing_arn(server.account_id, name)
    assert str(uuid.UUID(out["thingId"])) == out["thingId"]
    d = iot.describe_thing(thingName=name)
    assert d["defaultClientId"] == name
    assert (d["thingName"], d["thingId"], d["thingArn"]) == (name, out["thingId"], out["thingArn"])
    assert d["thingTypeName"] == "LightBulb"
    assert d["attributes"] == {"model": "123", "wattage": "75"}
    assert d["version"] == 1
    assert "billingGroupName" not in d

    plain = unique("plain")
    iot.create_thing(thingName=plain)
    d = iot.describe_thing(thingName=plain)
    assert "thingTypeName" not in d
    assert d["attributes"] == {}
    assert d["version"] == 1


def test_thing_names_with_colons_are_percent_encoded(server, iot):
    name = f"{unique('ns')}:sensor:1"
    iot.create_thing(thingName=name)
    assert iot.describe_thing(thingName=name)["thingArn"] == thing_arn(server.account_id, name)
    iot.update_thing(thingName=name, attributePayload=payload({"a": "1"}))
    assert iot.describe_thing(thingName=name)["version"] == 2
    iot.delete_thing(thingName=name)
    not_found(iot.describe_thing, thingName=name)


def test_create_thing_is_idempotent_for_the_same_configuration(server, iot):
    name = unique("idem")
    first = iot.create_thing(thingName=name, attributePayload=payload({"a": "1"}))
    again = iot.create_thing(thingName=name, attributePayload=payload({"a": "1"}))
    assert again["thingId"] == first["thingId"]
    assert iot.describe_thing(thingName=name)["version"] == 1
    resp = error(iot.create_thing, "ResourceAlreadyExistsException", 409, "already exists",
                 thingName=name, attributePayload=payload({"a": "2"}))
    assert resp["resourceId"] == first["thingId"]
    assert resp["resourceArn"] == first["thingArn"]
    error(iot.create_thing, "ResourceAlreadyExistsException", 409, thingName=name, thingTypeName="Other",
          attributePayload=payload({"a": "1"}))
    assert iot.describe_thing(thingName=name)["attributes"] == {"a": "1"}


def test_describe_missing_thing(iot):
    name = unique("ghost")
    resp = not_found(iot.describe_thing, name, thingName=name)
    assert resp["Error"]["Message"] == f"Thing {name} cannot be found."


def test_update_thing_attributes_type_and_versions(server, iot):
    name = unique("upd")
    iot.create_thing(thingName=name, thingTypeName="Sensor", attributePayload=payload({"a": "1", "b": "2", "c": "3"}))
    # merge=true: adds and changes; an empty value removes. UpdateThing's output is empty.
    out = iot.update_thing(thingName=name, attributePayload=payload({"b": "", "d": "4", "a": "9"}, merge=True))
    assert set(out) == {"ResponseMetadata"}
    d = iot.describe_thing(thingName=name)
    assert (d["attributes"], d["version"]) == ({"a": "9", "c": "3", "d": "4"}, 2)
    # Every update moves the version, even one that changes nothing.
    iot.update_thing(thingName=name)
    assert iot.describe_thing(thingName=name)["version"] == 3
    # Without merge the payload replaces the attributes.
    iot.update_thing(thingName=name, attributePayload=payload({"x": "1"}))
    d = iot.describe_thing(thingName=name)
    assert (d["attributes"], d["version"], d["thingTypeName"]) == ({"x": "1"}, 4, "Sensor")
    # expectedVersion: right → applied, wrong → VersionConflictException.
    iot.update_thing(thingName=name, thingTypeName="Sensor2", expectedVersion=4)
    d = iot.describe_thing(thingName=name)
    assert (d["thingTypeName"], d["version"]) == ("Sensor2", 5)
    conflict(iot.update_thing, name, thingName=name, thingTypeName="Nope", expectedVersion=4)
    assert iot.describe_thing(thingName=name)["version"] == 5
    # removeThingType.
    iot.update_thing(thingName=name, removeThingType=True)
    d = iot.describe_thing(thingName=name)
    assert "thingTypeName" not in d and d["version"] == 6
    invalid(iot.update_thing, "removeThingType", thingName=name, thingTypeName="T", removeThingType=True)
    not_found(iot.update_thing, thingName=unique("ghost"), attributePayload=payload({"a": "1"}))


def test_attribute_limits_follow_the_thing_type(iot):
    name = unique("lim")
    four = {"a": "1", "b": "2", "c": "3", "d": "4"}
    invalid(iot.create_thing, "at most 3", thingName=name, attributePayload=payload(four))
    not_found(iot.describe_thing, thingName=name)
    iot.create_thing(thingName=name, thingTypeName="Typed", attributePayload=payload(four))
    # Removing the type would leave 4 attributes on an untyped thing.
    invalid(iot.update_thing, "at most 3", thingName=name, removeThingType=True)
    fifty = {f"k{i}": str(i) for i in range(50)}
    iot.update_thing(thingName=name, attributePayload=payload(fifty))
    invalid(iot.update_thing, "at most 50", thingName=name, attributePayload=payload({"one-more": "x"}, merge=True))
    assert len(iot.describe_thing(thingName=name)["attributes"]) == 50


def test_thing_validation_messages(iot, iot_nv):
    resp = invalid(iot.create_thing, "1 validation error detected", thingName="t" * 129)
    assert "at 'thingName' failed to satisfy constraint: Member must have length between 1 and 128" in resp["Error"]["Message"]
    iot.create_thing(thingName=f"{unique('x')[:10]}{'t' * 118}")
    invalid(iot.create_thing, "regular expression pattern: [a-zA-Z0-9:_-]+", thingName="bad.name")
    invalid(iot.create_thing, "at 'thingTypeName'", thingName=unique("t"), thingTypeName="bad type")
    invalid(iot.create_thing, "Map keys must satisfy constraint", thingName=unique("t"), attributePayload=payload({"bad key": "v"}))
    invalid(iot.create_thing, "Map value must satisfy constraint", thingName=unique("t"), attributePayload=payload({"k": "bad value"}))
    invalid(iot.create_thing, "Map keys", thingName=unique("t"), attributePayload=payload({"k" * 129: "v"}))
    invalid(iot.create_thing, "Map value", thingName=unique("t"), attributePayload=payload({"k": "v" * 801}))
    ok = unique("t")
    iot.create_thing(thingName=ok, attributePayload=payload({"k" * 128: "v" * 800}))
    invalid(iot.create_thing, "billingGroupName", thingName=unique("t"), billingGroupName="bad group")
    not_found(iot.create_thing, "Billing group", thingName=unique("t"), billingGroupName="nosuch")
    invalid(iot.list_things, "Member must have value between 1 and 250", maxResults=251)
    invalid(iot_nv.list_things, "Member must have value between 1 and 250", maxResults=0)
    invalid(iot.list_things, "nextToken", nextToken="not-a-token")
    invalid(iot.list_things, "attributeName", attributeName="bad name")
    invalid(iot.list_things, "attributeName", attributeValue="v")
    invalid(iot_nv.describe_thing, "thingName", thingName="")


def test_delete_thing_versions_and_missing(iot):
    name = unique("del")
    iot.create_thing(thingName=name)
    iot.update_thing(thingName=name, attributePayload=payload({"a": "1"}))
    conflict(iot.delete_thing, name, thingName=name, expectedVersion=1)
    assert iot.describe_thing(thingName=name)["version"] == 2
    iot.delete_thing(thingName=name, expectedVersion=2)
    not_found(iot.describe_thing, thingName=name)
    # As AWS documents: deleting a thing that does not exist succeeds.
    iot.delete_thing(thingName=name)
    iot.delete_thing(thingName=name, expectedVersion=7)
    # A re-created thing starts over at version 1 with a new id.
    iot.create_thing(thingName=name)
    assert iot.describe_thing(thingName=name)["version"] == 1


def test_list_things_paging_and_filters(server, iot):
    batch = uuid.uuid4().hex[:10]
    ttype = f"T{batch}"
    made = []
    for i in range(7):
        n = f"lst-{batch}-{i}"
        typed = {"thingTypeName": ttype} if i % 2 == 0 else {}
        iot.create_thing(thingName=n, attributePayload=payload({"batch": batch, "color": ["red", "redish", "blue"][i % 3]}),
                         **typed)
        made.append(n)
    things, pages = all_pages(iot.list_things, "things", maxResults=2, attributeName="batch", attributeValue=batch)
    assert [t["thingName"] for t in things] == made, "listed by name, each once"
    assert pages == 4
    first = things[0]
    assert first["thingArn"] == thing_arn(server.account_id, made[0])
    assert first["thingTypeName"] == ttype and first["version"] == 1
    assert first["attributes"] == {"batch": batch, "color": "red"}
    assert "thingTypeName" not in things[1]

    by_type = all_pages(iot.list_things, "things", thingTypeName=ttype)[0]
    assert [t["thingName"] for t in by_type] == made[0::2]
    exact = iot.list_things(attributeName="color", attributeValue="red", thingTypeName=ttype)["things"]
    assert [t["thingName"] for t in exact] == [made[0], made[6]]
    prefix = iot.list_things(attributeName="color", attributeValue="red", usePrefixAttributeValue=True, thingTypeName=ttype)
    assert [t["thingName"] for t in prefix["things"]] == [made[0], made[4], made[6]]
    # attributeName alone: things that have the attribute.
    has = all_pages(iot.list_things, "things", attributeName="batch")[0]
    assert set(made) <= {t["thingName"] for t in has}
    # boto3's paginator (nextToken/maxResults as in paginators-1.json).
    pag = iot.get_paginator("list_things").paginate(attributeName="batch", attributeValue=batch,
                                                     PaginationConfig={"PageSize": 3})
    assert [t["thingName"] for page in pag for t in page["things"]] == made
    # A token of another listing is refused.
    token = iot.list_things(maxResults=1, attributeName="batch", attributeValue=batch)["nextToken"]
    invalid(iot.list_thing_groups, "nextToken", nextToken=token)


# ======================================================================================
# Thing groups
# ======================================================================================


def make_tree(iot, prefix: str) -> dict[str, str]:
    """prefix-root ─┬─ prefix-a ── prefix-a1 ── prefix-a1x
                    └─ prefix-b"""
    g = {k: f"{prefix}-{k}" for k in ("root", "a", "a1", "a1x", "b")}
    iot.create_thing_group(thingGroupName=g["root"])
    iot.create_thing_group(thingGroupName=g["a"], parentGroupName=g["root"])
    iot.create_thing_group(thingGroupName=g["a1"], parentGroupName=g["a"])
    iot.create_thing_group(thingGroupName=g["a1x"], parentGroupName=g["a1"])
    iot.create_thing_group(thingGroupName=g["b"], parentGroupName=g["root"])
    return g


def test_create_and_describe_thing_groups(server, iot):
    prefix = unique("tg")
    root = f"{prefix}-root"
    out = iot.create_thing_group(
        thingGroupName=root,
        thingGroupProperties={"thingGroupDescription": "Generic bulb group",
                              "attributePayload": payload({"Manufacturer": "AnyCompany", "wattage": "60"})},
        tags=[{"Key": "env", "Value": "test"}],
    )
    assert out["thingGroupName"] == root
    assert out["thingGroupArn"] == group_arn(server.account_id, root)
    assert str(uuid.UUID(out["thingGroupId"])) == out["thingGroupId"]
    child = f"{prefix}-child"
    iot.create_thing_group(thingGroupName=child, parentGroupName=root)

    d = iot.describe_thing_group(thingGroupName=root)
    assert (d["thingGroupName"], d["thingGroupId"], d["thingGroupArn"], d["version"]) == \
        (root, out["thingGroupId"], out["thingGroupArn"], 1)
    assert d["thingGroupProperties"] == {"thingGroupDescription": "Generic bulb group",
                                         "attributePayload": {"attributes": {"Manufacturer": "AnyCompany", "wattage": "60"}}}
    meta = d["thingGroupMetadata"]
    assert "parentGroupName" not in meta
    assert meta["rootToParentThingGroups"] == []
    assert abs((meta["creationDate"] - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 120
    assert "status" not in d, "static groups have no status"

    c = iot.describe_thing_group(thingGroupName=child)
    assert c["thingGroupProperties"] == {}
    assert c["thingGroupMetadata"]["parentGroupName"] == root
    assert c["thingGroupMetadata"]["rootToParentThingGroups"] == [
        {"groupName": root, "groupArn": group_arn(server.account_id, root)}]


def test_deep_hierarchy_root_to_parent_and_depth_limit(server, iot):
    prefix = unique("deep")
    chain = [f"{prefix}-{i}" for i in range(7)]
    parent = None
    for name in chain:
        iot.create_thing_group(thingGroupName=name, **({"parentGroupName": parent} if parent else {}))
        parent = name
    d = iot.describe_thing_group(thingGroupName=chain[-1])
    assert [g["groupName"] for g in d["thingGroupMetadata"]["rootToParentThingGroups"]] == chain[:-1]
    assert d["thingGroupMetadata"]["parentGroupName"] == chain[-2]
    invalid(iot.create_thing_group, "at most 7", thingGroupName=f"{prefix}-7", parentGroupName=chain[-1])


def test_create_thing_group_idempotency_and_errors(server, iot):
    prefix = unique("cg")
    props = {"thingGroupDescription": "d", "attributePayload": payload({"a": "1"})}
    first = iot.create_thing_group(thingGroupName=f"{prefix}-p")
    g = f"{prefix}-g"
    out = iot.create_thing_group(thingGroupName=g, parentGroupName=f"{prefix}-p", thingGroupProperties=props)
    again = iot.create_thing_group(thingGroupName=g, parentGroupName=f"{prefix}-p", thingGroupProperties=props)
    assert again["thingGroupId"] == out["thingGroupId"]
    resp = error(iot.create_thing_group, "ResourceAlreadyExistsException", 409, "already exists",
                 thingGroupName=g, parentGroupName=f"{prefix}-p", thingGroupProperties={"thingGroupDescription": "other"})
    assert (resp["resourceId"], resp["resourceArn"]) == (out["thingGroupId"], out["thingGroupArn"])
    error(iot.create_thing_group, "ResourceAlreadyExistsException", 409, thingGroupName=g, thingGroupProperties=props)
    assert first["thingGroupId"] != out["thingGroupId"]
    invalid(iot.create_thing_group, "parent thing group", thingGroupName=f"{prefix}-orphan", parentGroupName=f"{prefix}-nosuch")
    not_found(iot.describe_thing_group, thingGroupName=f"{prefix}-orphan")
    # Model constraints.
    invalid(iot.create_thing_group, "at 'thingGroupName'", thingGroupName="g" * 129)
    invalid(iot.create_thing_group, "regular expression", thingGroupName="bad group")
    invalid(iot.create_thing_group, "thingGroupDescription", thingGroupName=unique("g"),
            thingGroupProperties={"thingGroupDescription": "d" * 2029})
    invalid(iot.create_thing_group, "[\\p{Graph}\\x20]*", thingGroupName=unique("g"),
            thingGroupProperties={"thingGroupDescription": "tab\there"})
    iot.create_thing_group(thingGroupName=unique("g"), thingGroupProperties={"thingGroupDescription": "d" * 2028})
    invalid(iot.create_thing_group, "thingGroupProperties.attributePayload.attributes", thingGroupName=unique("g"),
            thingGroupProperties={"attributePayload": payload({"bad key": "v"})})
    invalid(iot.create_thing_group, "tags", thingGroupName=unique("g"),
            tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    invalid(iot.create_thing_group, "tags.1.member.Key", thingGroupName=unique("g"), tags=[{"Key": "bad\x07key"}])
    not_found(iot.describe_thing_group, "cannot be found", thingGroupName=unique("ghost"))


def test_update_thing_group(server, iot):
    g = unique("ug")
    iot.create_thing_group(thingGroupName=g, thingGroupProperties={
        "thingGroupDescription": "one", "attributePayload": payload({"a": "1", "b": "2"})})
    assert iot.update_thing_group(thingGroupName=g, thingGroupProperties={
        "attributePayload": payload({"b": "", "c": "3"}, merge=True)})["version"] == 2
    d = iot.describe_thing_group(thingGroupName=g)
    assert d["version"] == 2
    assert d["thingGroupProperties"] == {"thingGroupDescription": "one", "attributePayload": {"attributes": {"a": "1", "c": "3"}}}
    assert iot.update_thing_group(thingGroupName=g, expectedVersion=2, thingGroupProperties={
        "thingGroupDescription": "two", "attributePayload": payload({"z": "26"})})["version"] == 3
    d = iot.describe_thing_group(thingGroupName=g)
    assert d["thingGroupProperties"] == {"thingGroupDescription": "two", "attributePayload": {"attributes": {"z": "26"}}}
    conflict(iot.update_thing_group, g, thingGroupName=g, expectedVersion=2, thingGroupProperties={"thingGroupDescription": "x"})
    assert iot.describe_thing_group(thingGroupName=g)["version"] == 3
    not_found(iot.update_thing_group, thingGroupName=unique("ghost"), thingGroupProperties={"thingGroupDescription": "x"})
    invalid(iot.update_thing_group, "thingGroupDescription", thingGroupName=g,
            thingGroupProperties={"thingGroupDescription": "ü"})
    # thingGroupProperties is required; botocore checks it, the server too.
    r = raw_request(server, "PATCH", f"/thing-groups/{g}", body=b"{}", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.header("x-amzn-ErrorType") == "InvalidRequestException", r
    assert "Value null at 'thingGroupProperties'" in r.json()["message"]


def test_list_thing_groups_parent_recursive_prefix_paging(server, iot):
    prefix = unique("lg")
    g = make_tree(iot, prefix)
    everything = names(all_pages(iot.list_thing_groups, "thingGroups", namePrefixFilter=prefix)[0])
    assert everything == sorted(g.values())
    roots = names(iot.list_thing_groups(namePrefixFilter=prefix, recursive=False)["thingGroups"])
    assert roots == [g["root"]]
    direct = iot.list_thing_groups(parentGroup=g["root"], recursive=False)["thingGroups"]
    assert direct == [{"groupName": g["a"], "groupArn": group_arn(server.account_id, g["a"])},
                      {"groupName": g["b"], "groupArn": group_arn(server.account_id, g["b"])}]
    below = names(iot.list_thing_groups(parentGroup=g["root"])["thingGroups"])
    assert below == sorted([g["a"], g["a1"], g["a1x"], g["b"]])
    assert names(iot.list_thing_groups(parentGroup=g["root"], namePrefixFilter=f"{prefix}-a1")["thingGroups"]) == [g["a1"], g["a1x"]]
    paged, pages = all_pages(iot.list_thing_groups, "thingGroups", parentGroup=g["root"], maxResults=1)
    assert names(paged) == below and pages == 4
    not_found(iot.list_thing_groups, parentGroup=unique("ghost"))
    invalid(iot.list_thing_groups, "maxResults", maxResults=251)
    invalid(iot.list_thing_groups, "namePrefixFilter", namePrefixFilter="bad prefix")


def test_delete_thing_group_children_versions_and_missing(iot):
    prefix = unique("dg")
    g = make_tree(iot, prefix)
    resp = invalid(iot.delete_thing_group, thingGroupName=g["a1"])
    assert resp["Error"]["Message"] == (
        f"Cannot delete thing group : {g['a1']} when it still has child groups. Remove child groups first.")
    iot.update_thing_group(thingGroupName=g["a1x"], thingGroupProperties={"thingGroupDescription": "v2"})
    conflict(iot.delete_thing_group, thingGroupName=g["a1x"], expectedVersion=1)
    iot.delete_thing_group(thingGroupName=g["a1x"], expectedVersion=2)
    not_found(iot.describe_thing_group, thingGroupName=g["a1x"])
    iot.delete_thing_group(thingGroupName=g["a1"])
    # Deleting a group that does not exist succeeds (the operation has no 404).
    iot.delete_thing_group(thingGroupName=g["a1"])
    assert names(iot.list_thing_groups(parentGroup=g["root"])["thingGroups"]) == [g["a"], g["b"]]


# ======================================================================================
# Membership
# ======================================================================================


def test_membership_by_name_and_arn_and_recursive_listing(server, iot):
    prefix = unique("mb")
    g = make_tree(iot, prefix)
    t = {k: f"{prefix}-t{k}" for k in range(5)}
    for n in t.values():
        iot.create_thing(thingName=n)
    iot.add_thing_to_thing_group(thingGroupName=g["root"], thingName=t[0])
    iot.add_thing_to_thing_group(thingGroupArn=group_arn(server.account_id, g["a"]), thingName=t[1])
    iot.add_thing_to_thing_group(thingGroupName=g["a1x"], thingArn=thing_arn(server.account_id, t[2]))
    iot.add_thing_to_thing_group(thingGroupArn=group_arn(server.account_id, g["b"]),
                                 thingArn=thing_arn(server.account_id, t[3]))
    iot.add_thing_to_thing_group(thingGroupName=g["b"], thingName=t[3])  # again: no error

    assert iot.list_things_in_thing_group(thingGroupName=g["root"])["things"] == [t[0]]
    assert iot.list_things_in_thing_group(thingGroupName=g["root"], recursive=True)["things"] == [t[0], t[1], t[2], t[3]]
    assert iot.list_things_in_thing_group(thingGroupName=g["a"], recursive=True)["things"] == [t[1], t[2]]
    assert iot.list_things_in_thing_group(thingGroupName=g["a1"], recursive=False)["things"] == []
    got, pages = all_pages(iot.list_things_in_thing_group, "things", thingGroupName=g["root"], recursive=True, maxResults=3)
    assert got == [t[0], t[1], t[2], t[3]] and pages == 2
    pag = iot.get_paginator("list_things_in_thing_group").paginate(thingGroupName=g["root"], recursive=True,
                                                                     PaginationConfig={"PageSize": 1})
    assert [n for page in pag for n in page["things"]] == [t[0], t[1], t[2], t[3]]

    assert iot.list_thing_groups_for_thing(thingName=t[2])["thingGroups"] == [
        {"groupName": g["a1x"], "groupArn": group_arn(server.account_id, g["a1x"])}]
    assert iot.list_thing_groups_for_thing(thingName=t[4])["thingGroups"] == []

    iot.remove_thing_from_thing_group(thingGroupName=g["a1x"], thingArn=thing_arn(server.account_id, t[2]))
    iot.remove_thing_from_thing_group(thingGroupName=g["a1x"], thingName=t[2])  # not a member: no error
    assert iot.list_things_in_thing_group(thingGroupName=g["root"], recursive=True)["things"] == [t[0], t[1], t[3]]

    # Deleting a thing removes its memberships; deleting a group removes the group's.
    iot.delete_thing(thingName=t[1])
    assert iot.list_things_in_thing_group(thingGroupName=g["a"])["things"] == []
    iot.delete_thing_group(thingGroupName=g["b"])
    assert iot.list_thing_groups_for_thing(thingName=t[3])["thingGroups"] == []


def test_membership_errors(server, iot, iot_nv):
    prefix = unique("me")
    grp, thing = f"{prefix}-g", f"{prefix}-t"
    iot.create_thing_group(thingGroupName=grp)
    iot.create_thing(thingName=thing)
    not_found(iot.add_thing_to_thing_group, "cannot be found", thingGroupName=grp, thingName=f"{prefix}-nosuch")
    not_found(iot.add_thing_to_thing_group, "cannot be found", thingGroupName=f"{prefix}-nosuch", thingName=thing)
    not_found(iot.remove_thing_from_thing_group, thingGroupName=grp, thingName=f"{prefix}-nosuch")
    not_found(iot.remove_thing_from_thing_group, thingGroupName=f"{prefix}-nosuch", thingName=thing)
    invalid(iot.add_thing_to_thing_group, "thingName or thingArn", thingGroupName=grp)
    invalid(iot.add_thing_to_thing_group, "thingGroupName or thingGroupArn", thingName=thing)
    invalid(iot.add_thing_to_thing_group, "not a valid", thingGroupName=grp, thingArn="arn:aws:iot:nowhere")
    invalid(iot.add_thing_to_thing_group, "at 'thingName'", thingGroupName=grp, thingName="bad name")
    # An ARN of another account names nothing the caller can see.
    not_found(iot.add_thing_to_thing_group, thingGroupName=grp, thingArn=thing_arn(ACCOUNT_B.id, thing))
    not_found(iot.list_things_in_thing_group, thingGroupName=f"{prefix}-nosuch")
    not_found(iot.list_thing_groups_for_thing, thingName=f"{prefix}-nosuch")
    invalid(iot.list_things_in_thing_group, "maxResults", thingGroupName=grp, maxResults=251)
    invalid(iot_nv.list_thing_groups_for_thing, "maxResults", thingName=thing, maxResults=0)


def test_one_group_per_hierarchy_and_ten_groups_per_thing(iot):
    prefix = unique("hl")
    g = make_tree(iot, prefix)
    thing = f"{prefix}-t"
    iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=g["a1"], thingName=thing)
    invalid(iot.add_thing_to_thing_group, "same hierarchy", thingGroupName=g["b"], thingName=thing)
    invalid(iot.add_thing_to_thing_group, "same hierarchy", thingGroupName=g["root"], thingName=thing)
    others = [f"{prefix}-o{i}" for i in range(10)]
    for o in others:
        iot.create_thing_group(thingGroupName=o)
    for o in others[:9]:
        iot.add_thing_to_thing_group(thingGroupName=o, thingName=thing)
    invalid(iot.add_thing_to_thing_group, "10 thing groups", thingGroupName=others[9], thingName=thing)
    assert len(iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"]) == 10
    got, pages = all_pages(iot.list_thing_groups_for_thing, "thingGroups", thingName=thing, maxResults=4)
    assert names(got) == sorted([g["a1"]] + others[:9]) and pages == 3


# ======================================================================================
# Scoping
# ======================================================================================


def test_things_and_groups_are_scoped_per_account_and_region(server, iot, iot_b):
    name = unique("scoped")
    a = iot.create_thing(thingName=name)
    iot.create_thing_group(thingGroupName=name)
    not_found(iot_b.describe_thing, thingName=name)
    not_found(iot_b.describe_thing_group, thingGroupName=name)
    b = iot_b.create_thing(thingName=name, attributePayload=payload({"owner": "b"}))
    assert b["thingArn"] == thing_arn(ACCOUNT_B.id, name) and b["thingId"] != a["thingId"]
    assert iot.describe_thing(thingName=name)["attributes"] == {}
    not_found(iot_b.add_thing_to_thing_group, thingGroupName=name, thingName=name)

    west = client(server, region="eu-west-1")
    not_found(west.describe_thing, thingName=name)
    w = west.create_thing(thingName=name)
    assert w["thingArn"] == thing_arn(server.account_id, name, "eu-west-1")
    west.delete_thing(thingName=name)
    assert iot.describe_thing(thingName=name)["thingId"] == a["thingId"]
    # A thing ARN of another region is not the caller's thing in this region.
    not_found(iot.add_thing_to_thing_group, thingGroupName=name, thingArn=thing_arn(server.account_id, name, "eu-west-1"))


# ======================================================================================
# The trail
# ======================================================================================


def test_every_call_is_recorded_with_its_resources(server):
    region = "ap-northeast-2"
    c = client(server, region=region)
    ct = client(server, "cloudtrail", region=region)
    acct = server.account_id
    t, g, p = unique("ev-t"), unique("ev-g"), unique("ev-p")
    tarn, garn, parn = thing_arn(acct, t, region), group_arn(acct, g, region), group_arn(acct, p, region)
    c.create_thing(thingName=t)
    c.describe_thing(thingName=t)
    c.list_things()
    c.update_thing(thingName=t, attributePayload=payload({"a": "1"}))
    c.create_thing_group(thingGroupName=p)
    c.create_thing_group(thingGroupName=g, parentGroupName=p)
    c.describe_thing_group(thingGroupName=g)
    c.update_thing_group(thingGroupName=g, thingGroupProperties={"thingGroupDescription": "d"})
    c.list_thing_groups()
    c.add_thing_to_thing_group(thingGroupName=g, thingName=t)
    c.list_things_in_thing_group(thingGroupName=g, recursive=True)
    c.list_thing_groups_for_thing(thingName=t)
    c.remove_thing_from_thing_group(thingGroupArn=garn, thingArn=tarn)
    c.delete_thing_group(thingGroupName=g)
    c.delete_thing(thingName=t)
    with pytest.raises(ClientError):
        c.describe_thing(thingName=t)
    with pytest.raises(ClientError):
        c.delete_thing_group(thingGroupName=p, expectedVersion=9)

    T, G = "AWS::IoT::Thing", "AWS::IoT::ThingGroup"
    expected = {
        "CreateThing": (False, [(T, tarn)]),
        "DescribeThing": (True, [(T, tarn)]),
        "ListThings": (True, []),
        "UpdateThing": (False, [(T, tarn)]),
        "CreateThingGroup": (False, [(G, garn)]),
        "DescribeThingGroup": (True, [(G, garn)]),
        "UpdateThingGroup": (False, [(G, garn)]),
        "ListThingGroups": (True, []),
        "AddThingToThingGroup": (False, [(G, garn), (T, tarn)]),
        "ListThingsInThingGroup": (True, [(G, garn)]),
        "ListThingGroupsForThing": (True, [(T, tarn)]),
        "RemoveThingFromThingGroup": (False, [(G, garn), (T, tarn)]),
        "DeleteThingGroup": (False, [(G, garn)]),
        "DeleteThing": (False, [(T, tarn)]),
    }
    for name, (read_only, resources) in expected.items():
        events = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])["Events"]
        ok = [e for e in events if "errorCode" not in json.loads(e["CloudTrailEvent"])]
        assert ok, f"no successful {name} record: {events}"
        ev = ok[0]  # newest first
        rec = json.loads(ev["CloudTrailEvent"])
        assert (rec["eventSource"], rec["eventName"], rec["awsRegion"]) == ("iot.amazonaws.com", name, region)
        assert rec["readOnly"] is read_only and ev["ReadOnly"] == str(read_only).lower(), name
        assert [(r["ResourceType"], r["ResourceName"]) for r in ev.get("Resources", [])] == resources, name
        assert [(r["type"], r["ARN"]) for r in rec.get("resources") or []] == resources, name
    creates = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateThingGroup"}])["Events"]
    assert len(creates) == 2 and {r["ResourceName"] for e in creates for r in e["Resources"]} == {garn, parn}
    rec = json.loads(creates[-1]["CloudTrailEvent"])
    assert rec["requestParameters"] == {"thingGroupName": p}
    assert rec["responseElements"]["thingGroupArn"] == parn
    upd = json.loads(ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "UpdateThing"}])
                     ["Events"][0]["CloudTrailEvent"])
    assert upd["requestParameters"] == {"thingName": t, "attributePayload": {"attributes": {"a": "1"}}}
    failures = {}
    for name in ("DescribeThing", "DeleteThingGroup"):
        for e in ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])["Events"]:
            r = json.loads(e["CloudTrailEvent"])
            if "errorCode" in r:
                failures[name] = (r["errorCode"], r.get("requestParameters"))
    assert failures == {"DescribeThing": ("ResourceNotFoundException", {"thingName": t}),
                        "DeleteThingGroup": ("VersionConflictException", {"thingGroupName": p, "expectedVersion": 9})}
    lt = json.loads(ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ListThingsInThingGroup"}])
                    ["Events"][0]["CloudTrailEvent"])
    assert lt["requestParameters"] == {"thingGroupName": g, "recursive": True}
    # Nothing of this leaks into another region's history.
    home = client(server, "cloudtrail")
    ids = {json.loads(e["CloudTrailEvent"])["requestParameters"].get("thingName")
           for e in home.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateThing"}])["Events"]}
    assert t not in ids


# ======================================================================================
# Wire and CLI
# ======================================================================================


def test_rest_json_wire_shapes(server, iot):
    name = unique("wire")
    r = raw_request(server, "POST", f"/things/{name}", body=b"{}", headers={"Content-Type": "application/json"})
    assert r.status == 200 and r.header("Content-Type") == "application/json", r
    assert set(r.json()) == {"thingName", "thingArn", "thingId"}
    r = raw_request(server, "GET", f"/things/{name}")
    assert r.json()["defaultClientId"] == name
    r = raw_request(server, "DELETE", f"/things/{name}", query={"expectedVersion": "5"})
    assert r.status == 409 and r.header("x-amzn-ErrorType") == "VersionConflictException", r
    r = raw_request(server, "PATCH", f"/things/{name}", body=b'{"expectedVersion": "one"}',
                    headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.header("x-amzn-ErrorType") == "InvalidRequestException", r
    r = raw_request(server, "GET", "/things", query={"maxResults": "many"})
    assert r.status == 400, r
    r = raw_request(server, "PUT", f"/things/{name}", body=b"{}")
    assert r.status == 404 and r.header("x-amzn-ErrorType") == "UnknownOperationException", r


def test_aws_cli_lifecycle(server):
    p = unique("cli")
    grp, thing = f"{p}-g", f"{p}-t"
    out = aws_cli(server, "iot", "create-thing", "--thing-name", thing, "--attribute-payload",
                  '{"attributes": {"wattage": "75", "model": "123"}}')
    assert out["thingArn"] == thing_arn(server.account_id, thing)
    aws_cli(server, "iot", "update-thing", "--thing-name", thing, "--thing-type-name", "LightBulb",
            "--attribute-payload", '{"attributes": {"wattage": ""}, "merge": true}', "--expected-version", "1")
    d = aws_cli(server, "iot", "describe-thing", "--thing-name", thing)
    assert (d["attributes"], d["thingTypeName"], d["version"]) == ({"model": "123"}, "LightBulb", 2)
    aws_cli(server, "iot", "create-thing-group", "--thing-group-name", grp,
            "--thing-group-properties", 'thingGroupDescription="CLI group",attributePayload={attributes={site=lab}}')
    aws_cli(server, "iot", "add-thing-to-thing-group", "--thing-group-name", grp, "--thing-name", thing)
    assert aws_cli(server, "iot", "list-things-in-thing-group", "--thing-group-name", grp, "--recursive")["things"] == [thing]
    assert names(aws_cli(server, "iot", "list-thing-groups-for-thing", "--thing-name", thing)["thingGroups"]) == [grp]
    listed = aws_cli(server, "iot", "list-things", "--attribute-name", "model", "--attribute-value", "123",
                     "--thing-type-name", "LightBulb", "--page-size", "1")["things"]
    assert thing in [t["thingName"] for t in listed]
    aws_cli(server, "iot", "delete-thing", "--thing-name", thing)
    aws_cli(server, "iot", "delete-thing-group", "--thing-group-name", grp)
    try:
        aws_cli(server, "iot", "describe-thing-group", "--thing-group-name", grp)
    except AssertionError as e:
        assert "ResourceNotFoundException" in e.stderr, e.stderr
    else:
        raise AssertionError("describe-thing-group of a deleted group succeeded")
