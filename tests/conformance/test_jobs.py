"""IoT Jobs control plane (aws-api.md §8): CreateJob, DescribeJob, ListJobs, GetJobDocument,
UpdateJob, CancelJob, DeleteJob, ListJobExecutionsForJob, ListJobExecutionsForThing,
DescribeJobExecution, CancelJobExecution and DeleteJobExecution, with boto3 and the aws CLI;
their errors (400/404/409 and messages), paging, the job engine as far as the control plane
sees it (CONTINUOUS jobs reaching later group members, SNAPSHOT jobs completing), and their
records in LookupEvents.

Device-side status changes come with the Jobs data plane; here executions stay QUEUED unless
canceled. Every test names its resources uniquely (the module shares one server).
"""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import REGION, assert_client_error, aws_cli, client_config, put_object, raw_request, unique


def thing_arn(account: str, name: str, region: str = REGION) -> str:
    return f"arn:aws:iot:{region}:{account}:thing/{name}"


def group_arn(account: str, name: str, region: str = REGION) -> str:
    return f"arn:aws:iot:{region}:{account}:thinggroup/{name}"


def job_arn(account: str, job_id: str, region: str = REGION) -> str:
    return f"arn:aws:iot:{region}:{account}:job/{job_id}"


def client(server, service: str = "iot", region: str = REGION, validate: bool = True):
    p = server.root()
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


DOC = json.dumps({"operation": "update", "files": [{"fileName": "fw.bin"}]})


@pytest.fixture(scope="module")
def raw(server):
    """A client that leaves validation to the server."""
    return client(server, validate=False)


def fleet(iot, prefix: str, n: int) -> tuple[str, list[str]]:
    group = f"{prefix}-g"
    iot.create_thing_group(thingGroupName=group)
    things = []
    for i in range(n):
        t = f"{prefix}-t{i}"
        iot.create_thing(thingName=t)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=t)
        things.append(t)
    return group, things


def test_create_describe_document_and_executions(server, iot):
    p = unique("job")
    group, things = fleet(iot, p, 3)
    solo = f"{p}-solo"
    iot.create_thing(thingName=solo)
    acct = server.account_id
    out = iot.create_job(
        jobId=p,
        targets=[group_arn(acct, group), thing_arn(acct, solo), thing_arn(acct, things[0])],
        document=DOC,
        description="firmware 1.2",
        presignedUrlConfig={"roleArn": f"arn:aws:iam::{acct}:role/ota-role", "expiresInSec": 600},
        jobExecutionsRolloutConfig={"maximumPerMinute": 100},
        abortConfig={"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50,
                                        "minNumberOfExecutedThings": 10}]},
        timeoutConfig={"inProgressTimeoutInMinutes": 30},
        tags=[{"Key": "team", "Value": "fw"}],
    )
    assert out == {"jobArn": job_arn(acct, p), "jobId": p, "description": "firmware 1.2",
                   "ResponseMetadata": out["ResponseMetadata"]}
    job = iot.describe_job(jobId=p)["job"]
    assert (job["jobId"], job["status"], job["targetSelection"], job["forceCanceled"]) == (p, "IN_PROGRESS", "SNAPSHOT", False)
    assert job["presignedUrlConfig"] == {"roleArn": f"arn:aws:iam::{acct}:role/ota-role", "expiresInSec": 600}
    assert job["abortConfig"]["criteriaList"][0]["failureType"] == "FAILED"
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 30}
    assert job["jobProcessDetails"]["numberOfQueuedThings"] == 4, job["jobProcessDetails"]
    assert job["createdAt"].tzinfo is not None and "completedAt" not in job
    assert json.loads(iot.get_job_document(jobId=p)["document"]) == json.loads(DOC)

    ex = iot.list_job_executions_for_job(jobId=p)["executionSummaries"]
    assert [e["thingArn"] for e in ex] == sorted(thing_arn(acct, t) for t in things + [solo])
    s = ex[0]["jobExecutionSummary"]
    assert s["status"] == "QUEUED" and s["executionNumber"] >= 1 and "queuedAt" in s

    d = iot.describe_job_execution(jobId=p, thingName=solo)["execution"]
    assert (d["jobId"], d["status"], d["thingArn"], d["versionNumber"]) == (p, "QUEUED", thing_arn(acct, solo), 1)
    assert d["statusDetails"] == {"detailsMap": {}}
    by_number = iot.describe_job_execution(jobId=p, thingName=solo, executionNumber=d["executionNumber"])["execution"]
    assert by_number["executionNumber"] == d["executionNumber"]
    error(iot.describe_job_execution, "ResourceNotFoundException", 404, "cannot be found", jobId=p, thingName=solo,
          executionNumber=d["executionNumber"] + 1000)

    for_thing = iot.list_job_executions_for_thing(thingName=solo)["executionSummaries"]
    assert [e["jobId"] for e in for_thing] == [p]
    assert iot.list_job_executions_for_thing(thingName=solo, status="SUCCEEDED")["executionSummaries"] == []
    assert iot.list_job_executions_for_thing(thingName=solo, jobId=p)["executionSummaries"][0]["jobId"] == p


def test_create_errors(server, iot, raw):
    p = unique("jerr")
    acct = server.account_id
    iot.create_thing(thingName=f"{p}-t")
    target = [thing_arn(acct, f"{p}-t")]
    iot.create_job(jobId=p, targets=target, document=DOC)
    e = error(iot.create_job, "ResourceAlreadyExistsException", 409, "already exists", jobId=p, targets=target, document=DOC)
    assert e["resourceId"] == p and e["resourceArn"] == job_arn(acct, p)
    error(iot.create_job, "ResourceNotFoundException", 404, "cannot be found", jobId=f"{p}-2",
          targets=[thing_arn(acct, f"{p}-nosuch")], document=DOC)
    error(iot.create_job, "ResourceNotFoundException", 404, "cannot be found", jobId=f"{p}-2",
          targets=[group_arn(acct, f"{p}-nosuch")], document=DOC)
    error(iot.create_job, "InvalidRequestException", 400, "not the ARN", jobId=f"{p}-2",
          targets=[thing_arn("999999999999", f"{p}-t")], document=DOC)
    error(iot.create_job, "InvalidRequestException", 400, "Either document or documentSource", jobId=f"{p}-2", targets=target)
    error(iot.create_job, "InvalidRequestException", 400, "valid JSON", jobId=f"{p}-2", targets=target, document="nope")
    error(raw.create_job, "InvalidRequestException", 400, "at 'jobId' failed to satisfy constraint: Member must have length between 1 and 64",
          jobId="j" * 65, targets=target, document=DOC)
    error(raw.create_job, "InvalidRequestException", 400, "regular expression pattern: [a-zA-Z0-9_-]+",
          jobId="bad.id", targets=target, document=DOC)
    error(raw.create_job, "InvalidRequestException", 400, "at 'document'", jobId=f"{p}-2", targets=target,
          document=json.dumps({"x": "y" * 32768}))
    error(raw.create_job, "InvalidRequestException", 400, "Member must satisfy enum value set: [CONTINUOUS, SNAPSHOT]",
          jobId=f"{p}-2", targets=target, document=DOC, targetSelection="SOMETIMES")
    error(raw.create_job, "InvalidRequestException", 400, "jobExecutionsRolloutConfig.maximumPerMinute",
          jobId=f"{p}-2", targets=target, document=DOC, jobExecutionsRolloutConfig={"maximumPerMinute": 1001})
    error(raw.create_job, "InvalidRequestException", 400, "incrementFactor", jobId=f"{p}-2", targets=target, document=DOC,
          jobExecutionsRolloutConfig={"exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 7.5,
                                                          "rateIncreaseCriteria": {"numberOfNotifiedThings": 1}}})
    error(raw.create_job, "InvalidRequestException", 400, "Value null at 'abortConfig.criteriaList.1.member.action'",
          jobId=f"{p}-2", targets=target, document=DOC,
          abortConfig={"criteriaList": [{"failureType": "ALL", "thresholdPercentage": 10, "minNumberOfExecutedThings": 1}]})
    error(raw.create_job, "InvalidRequestException", 400, "thresholdPercentage", jobId=f"{p}-2", targets=target, document=DOC,
          abortConfig={"criteriaList": [{"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 101,
                                         "minNumberOfExecutedThings": 1}]})
    error(raw.create_job, "InvalidRequestException", 400, "inProgressTimeoutInMinutes", jobId=f"{p}-2", targets=target,
          document=DOC, timeoutConfig={"inProgressTimeoutInMinutes": 10081})
    error(raw.create_job, "InvalidRequestException", 400, "presignedUrlConfig.expiresInSec", jobId=f"{p}-2", targets=target,
          document=DOC, presignedUrlConfig={"expiresInSec": 3601})
    error(raw.create_job, "InvalidRequestException", 400, "at 'description'", jobId=f"{p}-2", targets=target,
          document=DOC, description="x" * 2029)
    # Nothing of the failed attempts was created.
    error(iot.describe_job, "ResourceNotFoundException", 404, f"Job {p}-2 cannot be found", jobId=f"{p}-2")


def test_document_source_reads_own_bucket(server, iot):
    p = unique("jsrc")
    acct = server.account_id
    iot.create_thing(thingName=f"{p}-t")
    bucket = f"{p}-docs".lower()
    put_object(server, bucket, "jobs/doc.json", DOC.encode())
    src = f"https://s3.amazonaws.com/{bucket}/jobs/doc.json"
    iot.create_job(jobId=p, targets=[thing_arn(acct, f"{p}-t")], documentSource=src)
    assert iot.get_job_document(jobId=p)["document"] == DOC
    assert iot.describe_job(jobId=p)["documentSource"] == src
    error(iot.create_job, "InvalidRequestException", 400, "does not name an object", jobId=f"{p}-2",
          targets=[thing_arn(acct, f"{p}-t")], documentSource=f"https://{bucket}.s3.amazonaws.com/missing.json")
    error(iot.create_job, "InvalidRequestException", 400, "not an S3 object URL", jobId=f"{p}-2",
          targets=[thing_arn(acct, f"{p}-t")], documentSource="https://example.com/doc.json")


def test_list_jobs_filters_and_paging(server, iot, raw):
    p = unique("jlist")
    acct = server.account_id
    group, _ = fleet(iot, p, 1)
    ids = [f"{p}-{i}" for i in range(5)]
    for i, j in enumerate(ids):
        iot.create_job(jobId=j, targets=[group_arn(acct, group)], document=DOC,
                       targetSelection="CONTINUOUS" if i == 4 else "SNAPSHOT")
    iot.cancel_job(jobId=ids[0])
    mine = [j for j in iot.list_jobs(thingGroupName=group)["jobs"]]
    assert [j["jobId"] for j in mine] == list(reversed(ids)), "newest first"
    assert set(mine[0]) >= {"jobArn", "jobId", "targetSelection", "status", "createdAt", "lastUpdatedAt"}
    pages, token = [], None
    while True:
        kw = {"thingGroupName": group, "maxResults": 2}
        if token:
            kw["nextToken"] = token
        r = iot.list_jobs(**kw)
        pages.append([j["jobId"] for j in r["jobs"]])
        token = r.get("nextToken")
        if not token:
            break
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[0:1]]
    paginated = [j["jobId"] for pg in iot.get_paginator("list_jobs").paginate(thingGroupName=group, PaginationConfig={"PageSize": 3})
                 for j in pg["jobs"]]
    assert paginated == list(reversed(ids))
    assert [j["jobId"] for j in iot.list_jobs(thingGroupName=group, status="CANCELED")["jobs"]] == [ids[0]]
    assert [j["jobId"] for j in iot.list_jobs(thingGroupName=group, targetSelection="CONTINUOUS")["jobs"]] == [ids[4]]
    gid = iot.describe_thing_group(thingGroupName=group)["thingGroupId"]
    assert len(iot.list_jobs(thingGroupId=gid)["jobs"]) == 5
    error(lambda: raw.list_jobs(status="DONE"), "InvalidRequestException", 400, "enum value set: [IN_PROGRESS, CANCELED, COMPLETED")
    error(raw.list_jobs, "InvalidRequestException", 400, "maxResults", maxResults=251)
    error(raw.list_jobs, "InvalidRequestException", 400, "nextToken", nextToken="garbage")
    # Executions of a job, paged by thing.
    g2, things = fleet(iot, f"{p}x", 5)
    iot.create_job(jobId=f"{p}-ex", targets=[group_arn(acct, g2)], document=DOC)
    got = [e["thingArn"] for pg in iot.get_paginator("list_job_executions_for_job").paginate(
        jobId=f"{p}-ex", PaginationConfig={"PageSize": 2}) for e in pg["executionSummaries"]]
    assert got == [thing_arn(acct, t) for t in sorted(things)]
    assert iot.list_job_executions_for_job(jobId=f"{p}-ex", status="CANCELED")["executionSummaries"] == []
    error(lambda: raw.list_job_executions_for_job(jobId=f"{p}-ex", status="WAITING"), "InvalidRequestException", 400,
          "enum value set")
    error(iot.list_job_executions_for_job, "ResourceNotFoundException", 404, "cannot be found", jobId=f"{p}-nosuch")


def test_update_cancel_and_delete(server, iot, raw):
    p = unique("jlife")
    acct = server.account_id
    group, things = fleet(iot, p, 2)
    iot.create_job(jobId=p, targets=[group_arn(acct, group)], document=DOC, description="v1")
    iot.update_job(jobId=p, description="v2", timeoutConfig={"inProgressTimeoutInMinutes": 5})
    job = iot.describe_job(jobId=p)["job"]
    assert (job["description"], job["timeoutConfig"]) == ("v2", {"inProgressTimeoutInMinutes": 5})
    error(raw.update_job, "InvalidRequestException", 400, "maximumPerMinute", jobId=p,
          jobExecutionsRolloutConfig={"maximumPerMinute": 0})
    error(iot.update_job, "ResourceNotFoundException", 404, "cannot be found", jobId=f"{p}-nosuch", description="x")

    # An IN_PROGRESS job is deleted only with force.
    error(iot.delete_job, "InvalidStateTransitionException", 409, "force", jobId=p)

    # Cancel one execution, then the job.
    iot.cancel_job_execution(jobId=p, thingName=things[0], statusDetails={"why": "test run"})
    d = iot.describe_job_execution(jobId=p, thingName=things[0])["execution"]
    assert (d["status"], d["versionNumber"], d["statusDetails"]) == ("CANCELED", 2, {"detailsMap": {"why": "test run"}})
    error(iot.cancel_job_execution, "InvalidStateTransitionException", 409, "CANCELED", jobId=p, thingName=things[0])
    error(iot.cancel_job_execution, "VersionConflictException", 409, "expected version 7", jobId=p, thingName=things[1],
          expectedVersion=7)
    error(iot.cancel_job_execution, "ResourceNotFoundException", 404, "cannot be found", jobId=p, thingName=f"{p}-nosuch")
    error(raw.cancel_job, "InvalidRequestException", 400, "reasonCode", jobId=p, reasonCode="lower case")
    out = iot.cancel_job(jobId=p, reasonCode="BAD_BUILD", comment="bricks devices")
    assert (out["jobId"], out["jobArn"]) == (p, job_arn(acct, p))
    job = iot.describe_job(jobId=p)["job"]
    assert (job["status"], job["reasonCode"], job["comment"]) == ("CANCELED", "BAD_BUILD", "bricks devices")
    assert job["jobProcessDetails"]["numberOfCanceledThings"] == 2 and "completedAt" in job
    error(iot.update_job, "InvalidRequestException", 400, "cannot be updated", jobId=p, description="v3")

    # Executions: terminal ones can be deleted, then the job.
    n = iot.describe_job_execution(jobId=p, thingName=things[0])["execution"]["executionNumber"]
    iot.delete_job_execution(jobId=p, thingName=things[0], executionNumber=n)
    error(iot.describe_job_execution, "ResourceNotFoundException", 404, "cannot be found", jobId=p, thingName=things[0])
    error(iot.delete_job_execution, "ResourceNotFoundException", 404, "cannot be found", jobId=p, thingName=things[0],
          executionNumber=n)
    iot.delete_job(jobId=p)
    error(iot.describe_job, "ResourceNotFoundException", 404, "cannot be found", jobId=p)
    error(iot.get_job_document, "ResourceNotFoundException", 404, "cannot be found", jobId=p)
    assert iot.list_job_executions_for_thing(thingName=things[1])["executionSummaries"] == []
    # The ID can be used again.
    iot.create_job(jobId=p, targets=[group_arn(acct, group)], document=DOC)

    # A queued execution is deleted only when terminal (or in progress with force).
    n = iot.describe_job_execution(jobId=p, thingName=things[1])["execution"]["executionNumber"]
    error(iot.delete_job_execution, "InvalidStateTransitionException", 409, "QUEUED", jobId=p, thingName=things[1],
          executionNumber=n, force=True)
    iot.delete_job(jobId=p, force=True)
    error(iot.describe_job, "ResourceNotFoundException", 404, jobId=p)


def test_engine_continuous_and_snapshot_completion(server, iot):
    p = unique("jeng")
    acct = server.account_id
    group, _ = fleet(iot, p, 1)
    iot.create_job(jobId=f"{p}-cont", targets=[group_arn(acct, group)], document=DOC, targetSelection="CONTINUOUS")
    iot.create_thing_group(thingGroupName=f"{p}-empty")
    iot.create_job(jobId=f"{p}-snap", targets=[group_arn(acct, f"{p}-empty")], document=DOC)
    late = f"{p}-late"
    iot.create_thing(thingName=late)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=late)
    deadline = time.time() + 10
    while time.time() < deadline:
        queued = iot.describe_job(jobId=f"{p}-cont")["job"]["jobProcessDetails"]["numberOfQueuedThings"]
        done = iot.describe_job(jobId=f"{p}-snap")["job"]["status"] == "COMPLETED"
        if queued == 2 and done:
            break
        time.sleep(0.3)
    assert iot.describe_job_execution(jobId=f"{p}-cont", thingName=late)["execution"]["status"] == "QUEUED"
    snap = iot.describe_job(jobId=f"{p}-snap")["job"]
    assert snap["status"] == "COMPLETED" and "completedAt" in snap
    assert iot.describe_job(jobId=f"{p}-cont")["job"]["status"] == "IN_PROGRESS"
    iot.delete_job(jobId=f"{p}-snap")


def test_wire_shapes(server, iot):
    p = unique("jwire")
    acct = server.account_id
    iot.create_thing(thingName=f"{p}-t")
    body = json.dumps({"targets": [thing_arn(acct, f"{p}-t")], "document": DOC}).encode()
    r = raw_request(server, "PUT", f"/jobs/{p}", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 200 and set(r.json()) == {"jobArn", "jobId"}, r
    r = raw_request(server, "GET", f"/jobs/{p}")
    assert isinstance(r.json()["job"]["createdAt"], float)
    r = raw_request(server, "DELETE", f"/things/{p}-t/jobs/{p}/executionNumber/one")
    assert r.status == 400 and r.header("x-amzn-ErrorType") == "InvalidRequestException", r
    r = raw_request(server, "PUT", f"/jobs/{p}/cancel", query={"force": "maybe"}, body=b"{}")
    assert r.status == 400, r
    r = raw_request(server, "DELETE", f"/jobs/{p}")
    assert r.status == 409 and r.header("x-amzn-ErrorType") == "InvalidStateTransitionException", r


def test_aws_cli(server, iot):
    p = unique("jcli")
    acct = server.account_id
    iot.create_thing(thingName=f"{p}-t")
    out = aws_cli(server, "iot", "create-job", "--job-id", p, "--targets", thing_arn(acct, f"{p}-t"),
                  "--document", DOC, "--description", "cli job")
    assert out["jobArn"] == job_arn(acct, p)
    assert aws_cli(server, "iot", "describe-job", "--job-id", p)["job"]["description"] == "cli job"
    assert json.loads(aws_cli(server, "iot", "get-job-document", "--job-id", p)["document"]) == json.loads(DOC)
    listed = aws_cli(server, "iot", "list-job-executions-for-job", "--job-id", p)["executionSummaries"]
    assert listed[0]["thingArn"] == thing_arn(acct, f"{p}-t")
    assert aws_cli(server, "iot", "list-job-executions-for-thing", "--thing-name", f"{p}-t")["executionSummaries"][0]["jobId"] == p
    aws_cli(server, "iot", "cancel-job", "--job-id", p, "--force")
    aws_cli(server, "iot", "delete-job", "--job-id", p)
    try:
        aws_cli(server, "iot", "describe-job", "--job-id", p)
    except AssertionError as e:
        assert "ResourceNotFoundException" in e.stderr, e.stderr
    else:
        raise AssertionError("describe-job of a deleted job succeeded")


def test_calls_in_lookup_events(server, iot):
    p = unique("jct")
    acct = server.account_id
    iot.create_thing(thingName=f"{p}-t")
    t = thing_arn(acct, f"{p}-t")
    iot.create_job(jobId=p, targets=[t], document=DOC)
    iot.describe_job(jobId=p)
    iot.get_job_document(jobId=p)
    iot.list_jobs(maxResults=1)
    iot.update_job(jobId=p, description="d")
    iot.list_job_executions_for_job(jobId=p)
    iot.list_job_executions_for_thing(thingName=f"{p}-t")
    iot.describe_job_execution(jobId=p, thingName=f"{p}-t")
    iot.cancel_job_execution(jobId=p, thingName=f"{p}-t")
    n = iot.describe_job_execution(jobId=p, thingName=f"{p}-t")["execution"]["executionNumber"]
    iot.delete_job_execution(jobId=p, thingName=f"{p}-t", executionNumber=n)
    iot.cancel_job(jobId=p)
    iot.delete_job(jobId=p)
    with pytest.raises(ClientError):
        iot.describe_job(jobId=p)
    ct = client(server, "cloudtrail")
    J = "AWS::IoT::Job"
    expected = {
        "CreateJob": False, "DescribeJob": True, "GetJobDocument": True, "ListJobs": True, "UpdateJob": False,
        "ListJobExecutionsForJob": True, "ListJobExecutionsForThing": True, "DescribeJobExecution": True,
        "CancelJobExecution": False, "DeleteJobExecution": False, "CancelJob": False, "DeleteJob": False,
    }
    for name, read_only in expected.items():
        events = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])["Events"]
        recs = [r for r in (json.loads(e["CloudTrailEvent"]) for e in events) if "errorCode" not in r]
        mine = [r for r in recs if (r.get("requestParameters") or {}).get("jobId") == p
                or (r.get("requestParameters") or {}).get("thingName") == f"{p}-t" or name == "ListJobs"]
        assert mine, f"no {name} record"
        rec = mine[0]
        assert (rec["eventSource"], rec["eventName"], rec["readOnly"]) == ("iot.amazonaws.com", name, read_only), name
        if name not in ("ListJobs", "ListJobExecutionsForThing"):
            assert [(r["type"], r["ARN"]) for r in rec.get("resources") or []] == [(J, job_arn(acct, p))], (name, rec)
    create = next(json.loads(e["CloudTrailEvent"]) for e in ct.lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": job_arn(acct, p)}])["Events"]
        if e["EventName"] == "CreateJob")
    assert create["requestParameters"]["targets"] == [t] and create["responseElements"]["jobId"] == p
    failed = [json.loads(e["CloudTrailEvent"]) for e in ct.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "DescribeJob"}])["Events"]]
    assert any(r.get("errorCode") == "ResourceNotFoundException" and r["requestParameters"]["jobId"] == p for r in failed)
