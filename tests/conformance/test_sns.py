"""SNS end to end, as CloudTrail trails use it: topics (Create/Delete/List/Get/SetTopicAttributes),
HTTP subscriptions confirmed through the SubscribeURL of a SubscriptionConfirmation,
signed notifications checked against the certificate at SigningCertURL, every error of the API,
the trail records of topic calls (Publish, a data event, has none), and deliveries that reach an
endpoint that was down for a minute, across a server restart.

A subscriber is an http.server on loopback, in a thread of the test. It checks each message's
SignatureVersion 2 signature (SHA256withRSA over SNS's string to sign) with the certificate it
downloads from SigningCertURL, using `cryptography`.

The module's server runs with `sns_retry_max_seconds = 2`: a failed delivery is tried again
after 1 s, 2 s, 2 s, … so a message reaches an endpoint within seconds of it coming back.

References: botocore's sns model (2010-03-31), shared/reference/cloudtrail.md §4.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from harness import (
    ACCOUNT_A,
    ACCOUNT_B,
    CONFIGURED_ACCOUNTS,
    REGION,
    assert_client_error,
    aws_cli,
    client_config,
    free_port,
    raw_request,
    render_config,
)

A, B = ACCOUNT_A.id, ACCOUNT_B.id
CONFIG = "sns_retry_max_seconds = 2\n" + render_config(CONFIGURED_ACCOUNTS)
XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SIGNED_FIELDS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
    "UnsubscribeConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
}


@pytest.fixture(scope="module")
def srv(server_factory):
    s = server_factory("configured", name="sns", start=False)
    s.config_path.write_text(CONFIG)
    s.start()
    yield s
    s.stop()


def client(srv, account=ACCOUNT_A, region: str = REGION, service: str = "sns"):
    return boto3.session.Session().client(
        service,
        region_name=region,
        endpoint_url=srv.endpoint,
        aws_access_key_id=account.root_key,
        aws_secret_access_key=account.root_secret,
        config=client_config(),
    )


@pytest.fixture(scope="module")
def sns(srv):
    return client(srv)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------------------
# A subscriber endpoint
# --------------------------------------------------------------------------------------

_CERTS: dict[str, x509.Certificate] = {}


def verify_signature(srv, msg: dict) -> None:
    """Checks a message as a subscriber should: the certificate comes from the server that
    sent it, and the signature covers SNS's string to sign."""
    assert msg["SignatureVersion"] == "2", msg
    url = msg["SigningCertURL"]
    assert url.startswith(srv.endpoint + "/_otatrail/sns/SimpleNotificationService-") and url.endswith(".pem"), url
    if url not in _CERTS:
        with urllib.request.urlopen(url, timeout=10) as r:  # no credentials: served openly
            _CERTS[url] = x509.load_pem_x509_certificate(r.read())
    cert = _CERTS[url]
    to_sign = "".join(f"{k}\n{msg[k]}\n" for k in SIGNED_FIELDS[msg["Type"]] if k in msg)
    cert.public_key().verify(base64.b64decode(msg["Signature"]), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


class Subscriber:
    """An HTTP endpoint on 127.0.0.1 that keeps every message it is posted (with its headers),
    checks its signature, and confirms subscriptions by GETting their SubscribeURL."""

    def __init__(self, srv, port: int | None = None, auto_confirm: bool = True):
        self.srv = srv
        self.port = port or free_port()
        self.auto_confirm = auto_confirm
        self.messages: list[dict] = []
        self.headers: list[dict] = []
        self.errors: list[str] = []
        self.cond = threading.Condition()
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sns"

    def start(self) -> "Subscriber":
        sub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    msg = json.loads(body)
                    verify_signature(sub.srv, msg)
                except Exception as e:  # kept, and reported by the test
                    with sub.cond:
                        sub.errors.append(f"{e!r}: {body[:300]!r}")
                    self.send_response(400)
                    self.end_headers()
                    return
                if msg["Type"] == "SubscriptionConfirmation" and sub.auto_confirm:
                    with urllib.request.urlopen(msg["SubscribeURL"], timeout=10) as r:  # unsigned, as a subscriber does
                        assert r.status == 200
                with sub.cond:
                    sub.messages.append(msg)
                    sub.headers.append({k.lower(): v for k, v in self.headers.items()})
                    sub.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def wait(self, pred, timeout: float = 15.0, what: str = "messages") -> list[dict]:
        """Waits until pred(messages) holds; returns the messages."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.messages}; errors {self.errors}")
                self.cond.wait(left)
            assert not self.errors, self.errors
            return list(self.messages)

    def of_type(self, t: str) -> list[dict]:
        with self.cond:
            return [m for m in self.messages if m["Type"] == t]


@pytest.fixture
def subscriber(srv):
    s = Subscriber(srv).start()
    yield s
    s.stop()


def subscribe_confirmed(sns, topic_arn: str, sub: Subscriber) -> str:
    """Subscribes the endpoint and waits until it has confirmed; returns the subscription ARN."""
    r = sns.subscribe(TopicArn=topic_arn, Protocol="http", Endpoint=sub.url)
    assert r["SubscriptionArn"] == "pending confirmation"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        subs = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        mine = [s for s in subs if s["Endpoint"] == sub.url]
        if mine and mine[0]["SubscriptionArn"] != "PendingConfirmation":
            return mine[0]["SubscriptionArn"]
        time.sleep(0.1)
    raise AssertionError(f"the subscription was not confirmed; endpoint got {sub.messages}, errors {sub.errors}")


def topic_attributes(sns, arn: str) -> dict:
    return sns.get_topic_attributes(TopicArn=arn)["Attributes"]


# --------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------


def test_topic_lifecycle(sns):
    name = unique("fw-events")
    arn = sns.create_topic(Name=name, Attributes={"DisplayName": "Firmware"}, Tags=[{"Key": "team", "Value": "ota"}])["TopicArn"]
    assert arn == f"arn:aws:sns:{REGION}:{A}:{name}"
    # Idempotent by name, with the same (or no) attributes.
    assert sns.create_topic(Name=name)["TopicArn"] == arn
    assert sns.create_topic(Name=name, Attributes={"DisplayName": "Firmware"})["TopicArn"] == arn

    attrs = topic_attributes(sns, arn)
    assert attrs["TopicArn"] == arn
    assert attrs["Owner"] == A
    assert attrs["DisplayName"] == "Firmware"
    assert (attrs["SubscriptionsConfirmed"], attrs["SubscriptionsPending"], attrs["SubscriptionsDeleted"]) == ("0", "0", "0")
    policy = json.loads(attrs["Policy"])
    stmt = policy["Statement"][0]
    assert stmt["Resource"] == arn and "SNS:Publish" in stmt["Action"]
    assert stmt["Condition"] == {"StringEquals": {"AWS:SourceOwner": A}}
    edp = json.loads(attrs["EffectiveDeliveryPolicy"])["http"]["defaultHealthyRetryPolicy"]
    assert edp["minDelayTarget"] == 1 and edp["maxDelayTarget"] == 2 and edp["numRetries"] > 1000

    new_policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AWSCloudTrailSNSPolicy", "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "SNS:Publish", "Resource": arn,
        }],
    }
    sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(new_policy))
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="OTA")
    delivery = {"http": {"defaultHealthyRetryPolicy": {"numRetries": 5, "minDelayTarget": 1, "maxDelayTarget": 10, "backoffFunction": "linear"}}}
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DeliveryPolicy", AttributeValue=json.dumps(delivery))
    attrs = topic_attributes(sns, arn)
    assert json.loads(attrs["Policy"]) == new_policy
    assert attrs["DisplayName"] == "OTA"
    assert json.loads(attrs["DeliveryPolicy"]) == delivery
    # An empty value removes an attribute: the default policy is back.
    sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue="")
    assert json.loads(topic_attributes(sns, arn)["Policy"])["Id"] == "__default_policy_ID"

    arns = [t["TopicArn"] for page in sns.get_paginator("list_topics").paginate() for t in page["Topics"]]
    assert arn in arns
    sns.delete_topic(TopicArn=arn)
    # Deleting a topic that does not exist is not an error (SNS documents DeleteTopic as idempotent).
    sns.delete_topic(TopicArn=arn)
    with pytest.raises(ClientError) as e:
        sns.get_topic_attributes(TopicArn=arn)
    assert_client_error(e.value, "NotFound", 404, "Topic does not exist")
    arns = [t["TopicArn"] for page in sns.get_paginator("list_topics").paginate() for t in page["Topics"]]
    assert arn not in arns


def test_list_topics_pages_of_100(srv):
    region = "eu-west-3"  # a region of its own: exactly these topics
    sns = client(srv, region=region)
    names = sorted(f"page-{i:03d}" for i in range(130))
    for n in names:
        sns.create_topic(Name=n)
    first = sns.list_topics()
    assert len(first["Topics"]) == 100 and first["NextToken"]
    second = sns.list_topics(NextToken=first["NextToken"])
    assert len(second["Topics"]) == 30 and "NextToken" not in second
    got = [t["TopicArn"] for t in first["Topics"] + second["Topics"]]
    assert got == [f"arn:aws:sns:{region}:{A}:{n}" for n in names]
    # The aws CLI pages through by itself.
    out = aws_cli(srv, "sns", "list-topics", "--region", region)
    assert [t["TopicArn"] for t in out["Topics"]] == got
    with pytest.raises(ClientError) as e:
        sns.list_topics(NextToken="!!not-a-token!!")
    assert_client_error(e.value, "InvalidParameter", 400)
    # Topics are per account and region.
    assert client(srv, account=ACCOUNT_B, region=region).list_topics()["Topics"] == []
    assert not any(t["TopicArn"].startswith(f"arn:aws:sns:{region}:") for t in client(srv).list_topics()["Topics"])


# --------------------------------------------------------------------------------------
# Subscriptions and delivery
# --------------------------------------------------------------------------------------


def test_http_subscription_confirmation_and_signed_notifications(srv, sns, subscriber):
    arn = sns.create_topic(Name=unique("ota"))["TopicArn"]
    sub_arn = subscribe_confirmed(sns, arn, subscriber)
    assert sub_arn.startswith(arn + ":")

    conf = subscriber.of_type("SubscriptionConfirmation")[0]
    assert conf["TopicArn"] == arn
    assert conf["Message"] == (
        f"You have chosen to subscribe to the topic {arn}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message."
    )
    assert conf["SubscribeURL"].startswith(f"{srv.endpoint}/?Action=ConfirmSubscription&TopicArn={arn}&Token=")
    assert conf["Token"] and TIMESTAMP_RE.match(conf["Timestamp"])
    h = subscriber.headers[0]
    assert h["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    assert h["x-amz-sns-message-id"] == conf["MessageId"]
    assert h["x-amz-sns-topic-arn"] == arn
    assert h["content-type"] == "text/plain; charset=UTF-8"

    attrs = topic_attributes(sns, arn)
    assert (attrs["SubscriptionsConfirmed"], attrs["SubscriptionsPending"]) == ("1", "0")
    listed = sns.list_subscriptions()["Subscriptions"]
    assert {"SubscriptionArn": sub_arn, "Owner": A, "Protocol": "http", "Endpoint": subscriber.url, "TopicArn": arn} in listed
    # Subscribing a confirmed endpoint again answers its ARN and sends nothing.
    assert sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=subscriber.url)["SubscriptionArn"] == sub_arn

    log_msg = json.dumps({"s3Bucket": "audit", "s3ObjectKey": ["AWSLogs/x.json.gz"]}, separators=(",", ":"))
    id1 = sns.publish(TopicArn=arn, Message=log_msg)["MessageId"]
    id2 = sns.publish(TopicArn=arn, Message="with subject", Subject="Firmware 1.2 ready",
                      MessageAttributes={"kind": {"DataType": "String", "StringValue": "fw"}})["MessageId"]
    id3 = aws_cli(srv, "sns", "publish", "--topic-arn", arn, "--message", "from the CLI")["MessageId"]
    msgs = subscriber.wait(lambda ms: len([m for m in ms if m["Type"] == "Notification"]) >= 3, what="3 notifications")
    notes = {m["MessageId"]: m for m in msgs if m["Type"] == "Notification"}
    assert set(notes) == {id1, id2, id3}
    n1, n2 = notes[id1], notes[id2]
    assert n1["Message"] == log_msg and "Subject" not in n1
    assert n2["Message"] == "with subject" and n2["Subject"] == "Firmware 1.2 ready"
    assert n1["TopicArn"] == arn and TIMESTAMP_RE.match(n1["Timestamp"])
    assert n1["UnsubscribeURL"] == f"{srv.endpoint}/?Action=Unsubscribe&SubscriptionArn={sub_arn}"
    assert list(n1) == ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature",
                        "SigningCertURL", "UnsubscribeURL"]
    nh = [h for h in subscriber.headers if h["x-amz-sns-message-type"] == "Notification"]
    assert all(h["x-amz-sns-subscription-arn"] == sub_arn and h["x-amz-sns-topic-arn"] == arn for h in nh)
    assert {h["x-amz-sns-message-id"] for h in nh} == {id1, id2, id3}

    # MessageStructure=json: http endpoints get the "http" member, else "default".
    id4 = sns.publish(TopicArn=arn, MessageStructure="json", Message=json.dumps({"default": "d", "http": "for http"}))["MessageId"]
    msgs = subscriber.wait(lambda ms: any(m["MessageId"] == id4 for m in ms), what="the json-structured message")
    assert [m["Message"] for m in msgs if m["MessageId"] == id4] == ["for http"]

    # The UnsubscribeURL works unsigned, as in SNS; no more messages afterwards.
    with urllib.request.urlopen(n1["UnsubscribeURL"], timeout=10) as r:
        assert r.status == 200 and XMLNS in r.read().decode()
    attrs = topic_attributes(sns, arn)
    assert (attrs["SubscriptionsConfirmed"], attrs["SubscriptionsDeleted"]) == ("0", "1")
    count = len(subscriber.messages)
    sns.publish(TopicArn=arn, Message="nobody listens")
    time.sleep(2)
    assert len(subscriber.messages) == count


def test_confirm_subscription_with_the_api(srv, sns):
    sub = Subscriber(srv, auto_confirm=False).start()
    try:
        arn = sns.create_topic(Name=unique("confirm"))["TopicArn"]
        sub_arn = sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=sub.url, ReturnSubscriptionArn=True)["SubscriptionArn"]
        assert sub_arn.startswith(arn + ":")
        listed = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
        assert [s["SubscriptionArn"] for s in listed] == ["PendingConfirmation"]
        assert topic_attributes(sns, arn)["SubscriptionsPending"] == "1"
        # Subscribing again while pending sends another confirmation.
        assert sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=sub.url)["SubscriptionArn"] == "pending confirmation"
        msgs = sub.wait(lambda ms: len(ms) >= 2, what="two confirmations")
        token = msgs[-1]["Token"]
        with pytest.raises(ClientError) as e:
            sns.confirm_subscription(TopicArn=arn, Token="0" * 128)
        assert_client_error(e.value, "InvalidParameter", 400, "Token")
        got = sns.confirm_subscription(TopicArn=arn, Token=token, AuthenticateOnUnsubscribe="true")["SubscriptionArn"]
        assert got == sub_arn
        assert sns.confirm_subscription(TopicArn=arn, Token=token)["SubscriptionArn"] == sub_arn
        # AuthenticateOnUnsubscribe: the unsigned UnsubscribeURL is refused; the owner may.
        with pytest.raises(urllib.error.HTTPError) as he:
            urllib.request.urlopen(f"{srv.endpoint}/?Action=Unsubscribe&SubscriptionArn={sub_arn}", timeout=10)
        assert he.value.code == 403 and b"<Code>AuthorizationError</Code>" in he.value.read()
        sns.unsubscribe(SubscriptionArn=sub_arn)
        assert sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"] == []
    finally:
        sub.stop()


def test_cross_account_access_follows_the_topic_policy(srv, sns):
    arn = sns.create_topic(Name=unique("shared"))["TopicArn"]
    b = client(srv, account=ACCOUNT_B)
    for call in (lambda: b.publish(TopicArn=arn, Message="m"), lambda: b.get_topic_attributes(TopicArn=arn),
                 lambda: b.subscribe(TopicArn=arn, Protocol="http", Endpoint="http://127.0.0.1:9/x")):
        with pytest.raises(ClientError) as e:
            call()
        assert_client_error(e.value, "AuthorizationError", 403, "is not authorized to perform: SNS:")
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{B}:root"}, "Action": "SNS:Publish", "Resource": arn}]}
    sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(policy))
    assert b.publish(TopicArn=arn, Message="m")["MessageId"]
    with pytest.raises(ClientError) as e:
        b.delete_topic(TopicArn=arn)
    assert_client_error(e.value, "AuthorizationError", 403)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def expect(code: str, status: int, fn, contains: str | None = None):
    with pytest.raises(ClientError) as e:
        fn()
    return assert_client_error(e.value, code, status, contains)


def test_every_error(srv, sns):
    missing = f"arn:aws:sns:{REGION}:{A}:{unique('missing')}"
    for fn in (
        lambda: sns.get_topic_attributes(TopicArn=missing),
        lambda: sns.set_topic_attributes(TopicArn=missing, AttributeName="DisplayName", AttributeValue="x"),
        lambda: sns.subscribe(TopicArn=missing, Protocol="http", Endpoint="http://127.0.0.1:9/x"),
        lambda: sns.publish(TopicArn=missing, Message="m"),
        lambda: sns.list_subscriptions_by_topic(TopicArn=missing),
        lambda: sns.confirm_subscription(TopicArn=missing, Token="ab"),
    ):
        expect("NotFound", 404, fn, "Topic does not exist")
    expect("NotFound", 404, lambda: sns.unsubscribe(SubscriptionArn=f"{missing}:{uuid.uuid4()}"), "Subscription does not exist")

    arn = sns.create_topic(Name=unique("errors"))["TopicArn"]
    for bad_arn in ("not-an-arn", f"arn:aws:sqs:{REGION}:{A}:q", f"arn:aws:sns:eu-west-1:{A}:t"):
        expect("InvalidParameter", 400, lambda: sns.get_topic_attributes(TopicArn=bad_arn), "TopicArn")
    expect("InvalidParameter", 400, lambda: sns.unsubscribe(SubscriptionArn="PendingConfirmation"), "SubscriptionArn")
    expect("InvalidParameter", 400, lambda: sns.create_topic(Name="bad name!"), "Topic Name")
    expect("InvalidParameter", 400, lambda: sns.create_topic(Name="x" * 257), "Topic Name")
    expect("InvalidParameter", 400, lambda: sns.create_topic(Name="q.fifo", Attributes={"FifoTopic": "true"}))
    expect("InvalidParameter", 400, lambda: sns.create_topic(Name=unique(), Attributes={"KmsMasterKeyId": "alias/aws/sns"}), "KMS")
    name = arn.rsplit(":", 1)[1]
    expect("InvalidParameter", 400, lambda: sns.create_topic(Name=name, Attributes={"DisplayName": "other"}), "different attributes")

    # Protocols: http and https only, with a clear message; endpoints must match.
    for proto, endpoint in (("sqs", f"arn:aws:sqs:{REGION}:{A}:q"), ("email", "ops@example.com"), ("lambda", f"arn:aws:lambda:{REGION}:{A}:function:f")):
        expect("InvalidParameter", 400, lambda: sns.subscribe(TopicArn=arn, Protocol=proto, Endpoint=endpoint), "http and https endpoints only")
    expect("InvalidParameter", 400, lambda: sns.subscribe(TopicArn=arn, Protocol="carrier-pigeon", Endpoint="x"), "does not support this protocol")
    expect("InvalidParameter", 400, lambda: sns.subscribe(TopicArn=arn, Protocol="https", Endpoint="http://127.0.0.1:9/x"), "Endpoint")
    expect("InvalidParameter", 400, lambda: sns.subscribe(TopicArn=arn, Protocol="http"), "Endpoint")
    expect("InvalidParameter", 400, lambda: sns.subscribe(TopicArn=arn, Protocol="http", Endpoint="http://127.0.0.1:9/x",
                                                          Attributes={"FilterPolicy": "{}"}), "FilterPolicy")

    # Attributes: policy JSON and its actions, delivery policy, unknown or read-only names.
    set_attr = lambda n, v: sns.set_topic_attributes(TopicArn=arn, AttributeName=n, AttributeValue=v)  # noqa: E731
    expect("InvalidParameter", 400, lambda: set_attr("Policy", "{not json"), "Policy")
    expect("InvalidParameter", 400, lambda: set_attr("Policy", json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}]})),
           "out of service scope")
    expect("InvalidParameter", 400, lambda: set_attr("Policy", json.dumps({"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "SNS:Publish"}]})), "Policy")
    expect("InvalidParameter", 400, lambda: set_attr("DeliveryPolicy", '{"http":{"defaultHealthyRetryPolicy":{"numRetries":-1}}}'), "DeliveryPolicy")
    expect("InvalidParameter", 400, lambda: set_attr("Owner", "x"), "AttributeName")
    expect("InvalidParameter", 400, lambda: set_attr("SignatureVersion", "1"), "SignatureVersion")

    # Publish.
    expect("InvalidParameter", 400, lambda: sns.publish(TopicArn=arn, Message=""), "Empty message")
    expect("InvalidParameter", 400, lambda: sns.publish(TopicArn=arn, Message="x" * (256 * 1024 + 1)), "too long")
    expect("InvalidParameter", 400, lambda: sns.publish(TopicArn=arn, Message="m", Subject="two\nlines"), "Subject")
    expect("InvalidParameter", 400, lambda: sns.publish(TopicArn=arn, Message='{"http":"x"}', MessageStructure="json"), "default")
    expect("InvalidParameter", 400, lambda: sns.publish(TargetArn=f"{arn}:endpoint", Message="m"), "TopicArn")
    expect("InvalidParameter", 400, lambda: sns.list_subscriptions(NextToken="%%%"), "NextToken")

    # The wire: SNS's XML error with namespace, Sender type and request id; unknown actions.
    body = urlencode({"Action": "GetTopicAttributes", "Version": "2010-03-31", "TopicArn": missing}).encode()
    hdrs = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    r = raw_request(srv, "POST", "/", body=body, headers=hdrs, service="sns")
    assert r.status == 404, r
    text = r.body.decode()
    assert text.startswith(f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type><Code>NotFound</Code>'), text
    assert f"<RequestId>{r.header('x-amzn-RequestId')}</RequestId>" in text
    r = raw_request(srv, "POST", "/", body=urlencode({"Action": "CreatePlatformApplication", "Version": "2010-03-31"}).encode(),
                    headers=hdrs, service="sns")
    assert r.status == 400 and "<Code>InvalidAction</Code>" in r.body.decode(), r
    # Unsigned calls other than the URLs of messages are refused.
    r = raw_request(srv, "GET", "/", signed=False, query={"Action": "ListTopics"})
    assert r.status == 403, r
    r = raw_request(srv, "GET", "/_otatrail/sns/SimpleNotificationService-00000000000000000000000000000000.pem", signed=False)
    assert r.status == 404, r
    r = raw_request(srv, "GET", "/", signed=False, query={"Action": "ConfirmSubscription", "TopicArn": arn, "Token": "ab" * 64})
    assert r.status == 400 and "<Code>InvalidParameter</Code>" in r.body.decode(), r


# --------------------------------------------------------------------------------------
# The trail
# --------------------------------------------------------------------------------------


def test_topic_calls_are_in_the_trail_and_publish_is_not(srv, sns, subscriber):
    name = unique("audited")
    arn = sns.create_topic(Name=name)["TopicArn"]
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="Audited")
    sns.get_topic_attributes(TopicArn=arn)
    sub_arn = subscribe_confirmed(sns, arn, subscriber)  # ConfirmSubscription through the SubscribeURL
    sns.publish(TopicArn=arn, Message="data event")
    subscriber.wait(lambda ms: any(m["Type"] == "Notification" for m in ms))
    sns.unsubscribe(SubscriptionArn=sub_arn)
    with pytest.raises(ClientError):
        sns.get_topic_attributes(TopicArn=arn + "-nope")
    sns.delete_topic(TopicArn=arn)

    ct = client(srv, service="cloudtrail")
    events = []
    for page in ct.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "sns.amazonaws.com"}]
    ):
        events += page["Events"]
    mine = [json.loads(e["CloudTrailEvent"]) for e in events if name in e["CloudTrailEvent"]]
    names = [r["eventName"] for r in reversed(mine)]
    for expected in ("CreateTopic", "SetTopicAttributes", "GetTopicAttributes", "Subscribe", "ConfirmSubscription",
                     "ListSubscriptionsByTopic", "Unsubscribe", "DeleteTopic"):
        assert expected in names, (expected, names)
    assert "Publish" not in names
    by_name = {r["eventName"]: r for r in mine}
    create = by_name["CreateTopic"]
    assert create["eventSource"] == "sns.amazonaws.com" and create["apiVersion"] == "2010-03-31"
    assert create["requestParameters"] == {"name": name}
    assert create["responseElements"] == {"topicArn": arn}
    assert create["readOnly"] is False and create["userIdentity"]["accountId"] == A
    assert create["resources"] == [{"accountId": A, "type": "AWS::SNS::Topic", "ARN": arn}]
    assert by_name["GetTopicAttributes"]["readOnly"] is True
    confirm = by_name["ConfirmSubscription"]
    assert confirm["userIdentity"] == {"type": "AWSAccount", "principalId": "", "accountId": "anonymous"}
    assert confirm["recipientAccountId"] == A
    assert confirm["responseElements"] == {"subscriptionArn": sub_arn}
    # The confirmation token is a secret of the endpoint: never in a record.
    token = subscriber.of_type("SubscriptionConfirmation")[0]["Token"]
    assert not any(token in e["CloudTrailEvent"] for e in events)
    failed = [r for r in mine if r.get("errorCode") == "NotFound"]
    assert failed and failed[0]["eventName"] == "GetTopicAttributes"


# --------------------------------------------------------------------------------------
# Deliveries survive a down endpoint and a restart
# --------------------------------------------------------------------------------------


def test_messages_reach_an_endpoint_down_for_a_minute_across_a_restart(srv, sns):
    port = free_port()
    sub = Subscriber(srv, port=port).start()
    arn = sns.create_topic(Name=unique("durable"))["TopicArn"]
    try:
        sub_arn = subscribe_confirmed(sns, arn, sub)
    finally:
        sub.stop()  # the port is closed from here on

    started = time.monotonic()
    ids = [sns.publish(TopicArn=arn, Message=f"while down {i}")["MessageId"] for i in range(3)]
    time.sleep(20)
    ids.append(sns.publish(TopicArn=arn, Message="before the restart", Subject="restart")["MessageId"])
    time.sleep(5)
    srv.restart()
    sns = client(srv)
    ids.append(sns.publish(TopicArn=arn, Message="after the restart")["MessageId"])
    time.sleep(max(0.0, 60 - (time.monotonic() - started)))

    back = Subscriber(srv, port=port).start()
    try:
        msgs = back.wait(lambda ms: set(ids) <= {m["MessageId"] for m in ms}, timeout=30, what="every message published while down")
    finally:
        back.stop()
    notes = [m for m in msgs if m["Type"] == "Notification"]
    assert {m["MessageId"] for m in notes} == set(ids)
    assert all(m["UnsubscribeURL"].endswith(sub_arn) for m in notes)
    assert {m["Message"] for m in notes} == {"while down 0", "while down 1", "while down 2", "before the restart", "after the restart"}
    assert [m.get("Subject") for m in notes if m["Message"] == "before the restart"] == ["restart"]
    assert "SNS delivery failed; will retry" in srv.all_logs()
