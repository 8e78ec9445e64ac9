"""Trails with an SNS topic: CloudTrail's policy check, one signed notification per delivered
log file naming it, GetTrailStatus's notification fields, and no notification lost while the
subscriber is down."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import ACCOUNT_A, CONFIGURED_ACCOUNTS, REGION, client_config, free_port, render_config
from test_sns import Subscriber, subscribe_confirmed

CONFIG = "delivery_interval_seconds = 1\nsns_retry_max_seconds = 2\n" + render_config(CONFIGURED_ACCOUNTS)


def client(srv, service: str):
    endpoint = srv.s3_endpoint if service == "s3" else srv.endpoint
    return boto3.session.Session().client(
        service, region_name=REGION, endpoint_url=endpoint,
        aws_access_key_id=ACCOUNT_A.root_key, aws_secret_access_key=ACCOUNT_A.root_secret, config=client_config(),
    )


def cloudtrail_topic_policy(topic_arn: str) -> str:
    """The topic policy the CloudTrail console writes."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AWSCloudTrailSNSPolicy", "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "SNS:Publish", "Resource": topic_arn,
        }],
    })


def expect(code: str, fn, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    assert e.value.response["Error"]["Code"] == code, e.value.response
    return e.value.response


def test_each_delivered_file_is_announced_even_across_an_outage(server_factory):
    srv = server_factory("configured", name="trail-sns", start=False)
    srv.config_path.write_text(CONFIG)
    srv.start()
    s3, ct, sns, iot = client(srv, "s3"), client(srv, "cloudtrail"), client(srv, "sns"), client(srv, "iot")
    bucket = f"notified-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    name = f"topic-{uuid.uuid4().hex[:8]}"
    topic = sns.create_topic(Name=name)["TopicArn"]

    # The topic must exist and let CloudTrail publish.
    expect("InvalidSnsTopicNameException", ct.create_trail, Name="notified", S3BucketName=bucket, SnsTopicName="no-such-topic")
    r = expect("InsufficientSnsTopicPolicyException", ct.create_trail, Name="notified", S3BucketName=bucket, SnsTopicName=name)
    assert topic in r["Error"]["Message"]
    sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=cloudtrail_topic_policy(topic))
    created = ct.create_trail(Name="notified", S3BucketName=bucket, SnsTopicName=name)
    assert created["SnsTopicARN"] == topic and created["SnsTopicName"] == name, created
    described = ct.describe_trails(trailNameList=["notified"])["trailList"][0]
    assert described["SnsTopicARN"] == topic, described

    sub = Subscriber(srv).start()
    subscribe_confirmed(sns, topic, sub)
    ct.start_logging(Name="notified")

    def keys():
        return {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])}

    def notified() -> list[str]:
        out = []
        for m in sub.of_type("Notification"):
            body = json.loads(m["Message"])
            assert set(body) == {"s3Bucket", "s3ObjectKey"} and body["s3Bucket"] == bucket, body
            out += body["s3ObjectKey"]
        return out

    iot.list_streams()
    sub.wait(lambda ms: any(m["Type"] == "Notification" for m in ms), 30, "a notification of a delivered file")
    status = ct.get_trail_status(Name="notified")
    assert "LatestNotificationTime" in status and "LatestNotificationError" not in status, status

    # The subscriber goes down; files delivered meanwhile are announced once it is back, even
    # across a server restart.
    port = sub.port
    sub.stop()
    before = set(notified())
    for _ in range(5):
        iot.list_streams()
        time.sleep(1.5)
    srv.restart()
    iot = client(srv, "iot")
    iot.list_streams()
    time.sleep(3)
    sub = Subscriber(srv, port=port).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = {k for k in keys() if "/CloudTrail/" in k}
            if files and files <= set(notified()) | before:
                break
            time.sleep(1)
        files = {k for k in keys() if "/CloudTrail/" in k}
        got = notified()
        assert files <= set(got) | before, f"files never announced: {sorted(files - set(got) - before)}"
        assert len(files) >= 3, files
        assert set(got) <= files, set(got) - files
    finally:
        sub.stop()
    assert not sub.errors, sub.errors

    # Clearing the topic stops notifications and its status fields.
    updated = ct.update_trail(Name="notified", SnsTopicName="")
    assert "SnsTopicARN" not in updated, updated
