//! Every request-facing parser faces bytes anyone can send: SigV4 headers, IoT rest-json
//! routes and bodies, CloudTrail json 1.1 targets and bodies, query-protocol parameters and the
//! S3 parsing otatrail does itself. The entry points and their invariants live in
//! `otatrail::fuzzing` (shared with the cargo-fuzz targets in `fuzz/`); this file feeds them
//! arbitrary bytes and structure-aware near-valid inputs.
//!
//! The number of cases per property is `OTATRAIL_FUZZ_CASES` (default 256), so a longer run is
//! `OTATRAIL_FUZZ_CASES=20000 cargo test -p otatrail --test hostile_input`.
//! Inputs that once crashed a target are kept at the end as plain tests.

use otatrail::api::query::QueryService;
use otatrail::fuzzing;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

fn cases() -> u32 {
    std::env::var("OTATRAIL_FUZZ_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------
// Shared generators

/// Strings that stress parsers: empty, long, non-ASCII, control characters, percent escapes,
/// huge numbers, and plain identifiers.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9_.:-]{0,24}",
        1 => Just(String::new()),
        1 => "\\PC{0,40}",
        1 => "[ \t\r\n\u{0}\u{7f}\u{85}\u{a0}\u{2028}%&=;,/]{0,12}",
        1 => "(%[0-9A-Fa-f]{2}|%[G-Zg-z]{1,2}|%){1,8}",
        1 => (1usize..5000).prop_map(|n| "a".repeat(n)),
        1 => select(vec!["18446744073709551616", "-9223372036854775809", "1e400", "NaN", "0x10", "-0", "+1", "9".repeat(400).leak()]).prop_map(String::from),
    ]
}

/// JSON values shaped like request members: scalars at the edges of their types, long
/// strings, objects whose keys come from `keys` (so they hit real members), arrays.
fn json_value(keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        select(vec![0i64, 1, -1, 10_000, 10_001, 86_400, i64::MAX, i64::MIN]).prop_map(Value::from),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((select(keys.to_vec()), inner.clone()), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
            vec((nasty_string(), inner), 0..3).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// A JSON body: the value as text, sometimes broken (truncated, deeply nested, huge numbers,
/// invalid UTF-8, trailing garbage).
fn json_body(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let object = vec((select(keys.to_vec()), json_value(keys)), 0..10)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).to_string().into_bytes())
        .boxed();
    prop_oneof![
        6 => object.clone(),
        1 => (object.clone(), any::<prop::sample::Index>()).prop_map(|(b, i)| { let n = i.index(b.len() + 1); b[..n].to_vec() }),
        1 => (1usize..3000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => (1usize..3000).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d)).into_bytes()),
        1 => (select(keys.to_vec()), select(vec!["1e400", "-1e400", "18446744073709551616", "123456789012345678901234567890", "1.5", "-0"]))
            .prop_map(|(k, n)| format!("{{\"{k}\":{n}}}").into_bytes()),
        1 => (object.clone(), vec(any::<u8>(), 1..8)).prop_map(|(mut b, junk)| { b.extend(junk); b }),
        1 => Just(b"{\"a\":\"\xff\xfe\"}".to_vec()),
        1 => Just(Vec::new()),
        1 => vec(any::<u8>(), 0..64),
    ]
}

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..1024)
}

// ---------------------------------------------------------------------------------------------
// SigV4

fn amz_date() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (2000u32..2100, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60)
            .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")),
        1 => "[0-9]{8}T[0-9]{6}Z",
        1 => "[0-9+-]{0,10}T?[0-9]{0,7}Z?",
        1 => select(vec!["99991231T235959Z", "00000101T000000Z", "20150830T123600", "20150830 123600Z", "2015-08-30T12:36:00Z"]).prop_map(String::from),
    ]
}

fn authorization() -> impl Strategy<Value = String> {
    let algorithm = prop_oneof![4 => Just("AWS4-HMAC-SHA256".to_string()), 1 => select(vec!["aws4-hmac-sha256", "AWS4-HMAC-SHA1", "AWS4-ECDSA-P256-SHA256", ""]).prop_map(String::from)];
    let date = prop_oneof![3 => "20[0-9]{6}", 1 => "[0-9]{0,9}", 1 => "[A-Za-z0-9]{8}"];
    let region = prop_oneof![3 => select(vec!["us-east-1", "eu-west-3", "us-gov-west-1", "us-isob-east-1"]).prop_map(String::from), 1 => nasty_string()];
    let service = prop_oneof![3 => select(vec!["iot", "iot-jobs-data", "cloudtrail", "sts", "iam", "sns", "s3"]).prop_map(String::from), 1 => nasty_string()];
    let terminator = prop_oneof![4 => Just("aws4_request".to_string()), 1 => select(vec!["aws4_reques", "AWS4_REQUEST", "", "aws4_request/extra"]).prop_map(String::from)];
    let credential = ("[A-Z0-9]{0,20}", date, region, service, terminator).prop_map(|(a, d, r, s, t)| format!("{a}/{d}/{r}/{s}/{t}"));
    let signed = prop_oneof![
        3 => vec(select(vec!["host", "x-amz-date", "x-amz-content-sha256", "x-amz-target", "content-type", "x-amz-security-token", "Host", "x-missing"]), 0..6).prop_map(|h| h.join(";")),
        1 => nasty_string(),
    ];
    let signature = prop_oneof![4 => "[0-9a-f]{64}", 1 => "[0-9A-F]{64}", 1 => "[0-9a-fg]{60,66}", 1 => nasty_string()];
    let sep = select(vec![", ", ",", " , ", ";", ",,", ", Foo=bar, "]);
    (algorithm, credential, signed, signature, sep, any::<u8>(), nasty_string()).prop_map(|(alg, c, h, s, sep, shape, extra)| {
        let mut parts = vec![format!("Credential={c}"), format!("SignedHeaders={h}"), format!("Signature={s}")];
        match shape % 8 {
            0 => {
                parts.remove(usize::from(shape / 8) % 3);
            }
            1 => parts.reverse(),
            2 => parts.push(format!("Credential={extra}")),
            3 => parts.push(extra),
            _ => {}
        }
        format!("{alg} {}", parts.join(sep))
    })
}

fn request_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(prop_oneof!["[A-Za-z0-9_-]{1,12}", Just("..".to_string()), Just(".".to_string()), Just(String::new()), "(%[0-9A-Fa-f]{2}){1,3}"], 0..6)
            .prop_map(|s| format!("/{}", s.join("/"))),
        1 => nasty_string().prop_map(|s| format!("/{s}")),
        1 => nasty_string(),
    ]
}

fn query_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(("[A-Za-z0-9%+._~-]{0,12}", "[A-Za-z0-9%+=/._~-]{0,16}"), 0..6)
            .prop_map(|kv| kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")),
        1 => Just("X-Amz-Signature=abc&X-Amz-Algorithm=AWS4-HMAC-SHA256&a=%ZZ&&=&b".to_string()),
        1 => nasty_string(),
    ]
}

fn header_block() -> impl Strategy<Value = String> {
    vec(
        (
            select(vec!["host", "content-type", "x-amz-target", "x-amz-content-sha256", "user-agent", "X-Amz-Date", "x-custom", "bad name", ""]),
            nasty_string(),
        ),
        0..6,
    )
    .prop_map(|h| h.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("\n"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sigv4_arbitrary_bytes(data in arbitrary_bytes()) {
        fuzzing::sigv4(&data);
    }

    #[test]
    fn sigv4_near_valid(
        selector in any::<u8>(),
        auth in authorization(),
        date in amz_date(),
        method in select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "get", "BREW", ""]),
        path in request_path(),
        query in query_string(),
        headers in header_block(),
        token in prop_oneof![Just(String::new()), "[A-Za-z0-9+/=]{1,200}", nasty_string()],
        body in vec(any::<u8>(), 0..256),
    ) {
        fuzzing::sigv4(&fuzzing::sigv4_input(selector, &auth, &date, method, &path, &query, &headers, &token, &body));
    }
}

// ---------------------------------------------------------------------------------------------
// IoT rest-json

const IOT_KEYS: &[&str] = &[
    "description", "files", "fileId", "s3Location", "bucket", "key", "version", "roleArn", "tags", "Key", "Value",
    "thingTypeName", "attributePayload", "attributes", "merge", "expectedVersion", "removeThingType", "billingGroupName",
    "parentGroupName", "thingGroupProperties", "thingGroupDescription", "thingGroupName", "thingGroupArn", "thingName",
    "thingArn", "overrideDynamicGroups", "targets", "document", "documentSource", "targetSelection", "jobExecutionsRolloutConfig",
    "maximumPerMinute", "exponentialRate", "baseRatePerMinute", "incrementFactor", "rateIncreaseCriteria", "numberOfNotifiedThings",
    "numberOfSucceededThings", "abortConfig", "criteriaList", "failureType", "action", "thresholdPercentage", "minNumberOfExecutedThings",
    "timeoutConfig", "inProgressTimeoutInMinutes", "namespaceId", "jobTemplateArn", "reasonCode", "comment", "statusDetails",
    "otaUpdateId", "protocols", "awsJobExecutionsRolloutConfig", "awsJobPresignedUrlConfig", "expiresInSec", "fileName", "fileType",
    "fileVersion", "fileLocation", "stream", "streamId", "codeSigning", "awsSignerJobId", "startSigningJobParameter",
    "signingProfileName", "customCodeSigning", "signature", "inlineDocument", "certificateChain", "certificateName",
    "hashAlgorithm", "signatureAlgorithm", "additionalParameters",
];

/// Near-valid bodies of the main IoT operations, then mutated by [`json_body`]'s neighbours.
fn iot_body() -> impl Strategy<Value = Vec<u8>> {
    let stream = ("[a-zA-Z0-9_-]{1,12}", 0i64..300, nasty_string()).prop_map(|(b, id, k)| {
        json!({"description": "d", "files": [{"fileId": id, "s3Location": {"bucket": b, "key": k}}], "roleArn": "arn:aws:iam::123456789012:role/r"})
    });
    let thing = (nasty_string(), nasty_string(), any::<bool>(), any::<i64>()).prop_map(|(k, v, m, ver)| {
        json!({"thingTypeName": "t", "attributePayload": {"attributes": {k: v}, "merge": m}, "expectedVersion": ver})
    });
    let group = (nasty_string(), nasty_string()).prop_map(|(p, d)| {
        json!({"parentGroupName": p, "thingGroupProperties": {"thingGroupDescription": d, "attributePayload": {"attributes": {"a": "b"}}}})
    });
    let job = (nasty_string(), any::<i64>(), any::<f64>(), any::<i64>()).prop_map(|(t, n, f, m)| {
        json!({
            "targets": [format!("arn:aws:iot:us-east-1:123456789012:thing/{t}")],
            "document": "{\"operation\":\"x\"}",
            "targetSelection": "SNAPSHOT",
            "jobExecutionsRolloutConfig": {"maximumPerMinute": n, "exponentialRate": {"baseRatePerMinute": m, "incrementFactor": f, "rateIncreaseCriteria": {"numberOfNotifiedThings": n}}},
            "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": f, "minNumberOfExecutedThings": m}]},
            "timeoutConfig": {"inProgressTimeoutInMinutes": n}
        })
    });
    let ota = (nasty_string(), any::<i64>(), nasty_string()).prop_map(|(name, v, sig)| {
        json!({
            "targets": ["arn:aws:iot:us-east-1:123456789012:thinggroup/g"],
            "protocols": ["MQTT"],
            "files": [{"fileName": name, "fileType": v, "fileLocation": {"s3Location": {"bucket": "b", "key": "k"}},
                       "codeSigning": {"customCodeSigning": {"signature": {"inlineDocument": sig}, "certificateChain": {"certificateName": "c"}, "hashAlgorithm": "SHA256", "signatureAlgorithm": "ECDSA"}}}],
            "roleArn": "arn:aws:iam::123456789012:role/ota"
        })
    });
    prop_oneof![
        2 => prop_oneof![stream, thing, group, job, ota].prop_map(|v| v.to_string().into_bytes()),
        3 => json_body(IOT_KEYS),
    ]
}

fn iot_route() -> impl Strategy<Value = (&'static str, String)> {
    let id = prop_oneof![4 => "[A-Za-z0-9_:-]{1,20}", 1 => nasty_string().prop_map(|s| otatrail_sigv4::uri_encode(&s, false)), 1 => Just("%FF%FE".to_string()), 1 => Just(String::new())];
    let template = select(vec![
        ("POST", "/streams/{}"), ("PUT", "/streams/{}"), ("GET", "/streams/{}"), ("GET", "/streams"),
        ("POST", "/things/{}"), ("PATCH", "/things/{}"), ("DELETE", "/things/{}"), ("GET", "/things"), ("GET", "/things/{}/thing-groups"),
        ("POST", "/thing-groups/{}"), ("PATCH", "/thing-groups/{}"), ("GET", "/thing-groups"), ("DELETE", "/thing-groups/{}"),
        ("PUT", "/thing-groups/addThingToThingGroup"), ("PUT", "/thing-groups/removeThingFromThingGroup"), ("GET", "/thing-groups/{}/things"),
        ("PUT", "/jobs/{}"), ("PATCH", "/jobs/{}"), ("GET", "/jobs"), ("PUT", "/jobs/{}/cancel"), ("DELETE", "/jobs/{}"),
        ("GET", "/jobs/{}/job-document"), ("GET", "/things/{}/jobs"), ("GET", "/things/{}/jobs/{}"), ("PUT", "/things/{}/jobs/{}/cancel"),
        ("DELETE", "/things/{}/jobs/{}/executionNumber/{}"), ("POST", "/otaUpdates/{}"), ("GET", "/otaUpdates"), ("DELETE", "/otaUpdates/{}"),
        ("BREW", "/streams/{}"), ("GET", "/{}"),
    ]);
    (template, id.clone(), id).prop_map(|((m, t), a, b)| {
        let mut out = String::new();
        for (i, piece) in t.split("{}").enumerate() {
            if i > 0 {
                out.push_str(if i % 2 == 1 { &a } else { &b });
            }
            out.push_str(piece);
        }
        (m, out)
    })
}

fn iot_query() -> impl Strategy<Value = String> {
    vec(
        (
            select(vec!["maxResults", "nextToken", "isAscendingOrder", "expectedVersion", "recursive", "force", "namespaceId", "executionNumber", "beforeSubstitution", "deleteStream", "forceDeleteAWSJob", "usePrefixAttributeValue", "status"]),
            prop_oneof![select(vec!["true", "false", "1", "-1", "0", "TRUE", "9223372036854775808", "", "%ZZ"]).prop_map(String::from), nasty_string().prop_map(|s| otatrail_sigv4::uri_encode(&s, false))],
        ),
        0..5,
    )
    .prop_map(|kv| kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rest_json_arbitrary_bytes(data in arbitrary_bytes()) {
        fuzzing::rest_json(&data);
    }

    #[test]
    fn rest_json_near_valid((method, path) in iot_route(), query in iot_query(), body in iot_body()) {
        fuzzing::rest_json(&fuzzing::rest_json_input(method, &path, &query, &body));
    }
}

// ---------------------------------------------------------------------------------------------
// CloudTrail json 1.1

const CLOUDTRAIL_KEYS: &[&str] = &[
    "Name", "S3BucketName", "S3KeyPrefix", "SnsTopicName", "IncludeGlobalServiceEvents", "IsMultiRegionTrail",
    "EnableLogFileValidation", "CloudWatchLogsLogGroupArn", "KmsKeyId", "IsOrganizationTrail", "TagsList", "Key", "Value",
    "LookupAttributes", "AttributeKey", "AttributeValue", "StartTime", "EndTime", "EventCategory", "MaxResults", "NextToken",
    "trailNameList", "includeShadowTrails", "TrailName", "EventSelectors", "ReadWriteType", "IncludeManagementEvents",
    "DataResources", "Type", "Values", "ExcludeManagementEventSources", "AdvancedEventSelectors", "FieldSelectors", "Field",
    "Equals", "StartsWith", "EndsWith", "NotEquals", "NotStartsWith", "NotEndsWith",
];

const CLOUDTRAIL_OPS: &[&str] = &[
    "CreateTrail", "UpdateTrail", "DeleteTrail", "StartLogging", "StopLogging", "PutEventSelectors", "LookupEvents", "DescribeTrails",
    "GetTrail", "ListTrails", "GetTrailStatus", "GetEventSelectors", "ListPublicKeys", "lookupEvents", "CreateTrail ", "GetInsightSelectors", "",
];

fn cloudtrail_body() -> impl Strategy<Value = Vec<u8>> {
    let lookup = (nasty_string(), any::<f64>(), any::<i64>(), select(vec!["EventName", "Username", "ResourceName", "EventSource", "AccessKeyId", "ReadOnly", "EventId", "ResourceType", "Bogus"]))
        .prop_map(|(v, t, n, k)| json!({"LookupAttributes": [{"AttributeKey": k, "AttributeValue": v}], "StartTime": t, "EndTime": n, "MaxResults": n}));
    let trail = (nasty_string(), nasty_string(), vec(("[a-z]{0,4}", "[a-z]{0,4}"), 0..60))
        .prop_map(|(n, p, tags)| json!({"Name": n, "S3BucketName": "bucket", "S3KeyPrefix": p, "TagsList": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()}));
    let selectors = (nasty_string(), select(vec!["eventCategory", "readOnly", "eventSource", "eventName", "resources.type", "resources.ARN", "bogus"]))
        .prop_map(|(v, f)| json!({"TrailName": "t", "AdvancedEventSelectors": [{"Name": "n", "FieldSelectors": [{"Field": f, "Equals": [v]}]}], "EventSelectors": [{"ReadWriteType": v, "DataResources": [{"Type": "AWS::S3::Object", "Values": [v]}]}]}));
    prop_oneof![2 => prop_oneof![lookup, trail, selectors].prop_map(|v| v.to_string().into_bytes()), 3 => json_body(CLOUDTRAIL_KEYS)]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_1_1_arbitrary_bytes(data in arbitrary_bytes()) {
        fuzzing::json_1_1(&data);
    }

    #[test]
    fn json_1_1_near_valid(
        prefixed in prop_oneof![4 => Just(true), 1 => Just(false)],
        method in select(vec!["POST", "POST", "POST", "GET", "PUT"]),
        path in select(vec!["/", "/", "/", "", "/x", "//"]),
        target in prop_oneof![4 => select(CLOUDTRAIL_OPS.to_vec()).prop_map(String::from), 1 => nasty_string(),
            1 => select(CLOUDTRAIL_OPS.to_vec()).prop_map(|o| format!("CloudTrail_20131101.{o}"))],
        body in cloudtrail_body(),
    ) {
        fuzzing::json_1_1(&fuzzing::json_1_1_input(prefixed, method, path, &target, &body));
    }
}

// ---------------------------------------------------------------------------------------------
// Query protocol

const QUERY_ACTIONS: &[&str] = &[
    "GetCallerIdentity", "GetSessionToken", "GetFederationToken", "AssumeRole", "CreateUser", "GetUser", "ListUsers", "DeleteUser",
    "CreateAccessKey", "ListAccessKeys", "UpdateAccessKey", "DeleteAccessKey", "CreateRole", "GetRole", "ListRoles", "DeleteRole",
    "UpdateAssumeRolePolicy", "TagUser", "UntagUser", "ListUserTags", "TagRole", "UntagRole", "ListRoleTags", "Publish", "CreateTopic",
    "DeleteTopic", "ListTopics", "GetTopicAttributes", "SetTopicAttributes", "Subscribe", "ConfirmSubscription", "Unsubscribe",
    "ListSubscriptionsByTopic", "ListSubscriptions", "getCallerIdentity", "",
];

const QUERY_NAMES: &[&str] = &[
    "DurationSeconds", "Name", "Policy", "RoleArn", "RoleSessionName", "SourceIdentity", "ExternalId", "UserName", "Path", "PathPrefix",
    "Marker", "MaxItems", "AccessKeyId", "Status", "RoleName", "AssumeRolePolicyDocument", "Description", "MaxSessionDuration",
    "PolicyDocument", "TopicArn", "TargetArn", "PhoneNumber", "Message", "Subject", "MessageStructure", "NextToken", "AttributeName",
    "AttributeValue", "Protocol", "Endpoint", "ReturnSubscriptionArn", "Token", "AuthenticateOnUnsubscribe", "SubscriptionArn",
];

/// A list or map member name: `Tags.member.N.Key`, `TagKeys.member.N`, `Attributes.entry.N.key`,
/// with N at and past its edges.
fn indexed_name() -> impl Strategy<Value = String> {
    let n = prop_oneof![4 => (1u64..4).prop_map(|n| n.to_string()), 1 => select(vec!["0", "-1", "", "01", "x", "18446744073709551616"]).prop_map(String::from), 1 => (5u64..100_000_000).prop_map(|n| n.to_string())];
    (select(vec!["Tags.member.{}.Key", "Tags.member.{}.Value", "TagKeys.member.{}", "Attributes.entry.{}.key", "Attributes.entry.{}.value", "Tags.member.{}", "Foo.member.{}.Bar.Baz"]), n)
        .prop_map(|(t, n)| t.replace("{}", &n))
}

fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => nasty_string(),
        1 => select(vec!["arn:aws:sns:us-east-1:123456789012:topic", "arn:aws:sns:us-east-1:123456789012:topic:0b8f1c3e-0000-4000-8000-000000000000", "arn:aws:sns::1:", "arn:aws:sns:us-east-1:123456789012", "arn:aws:iam::123456789012:role/r", "https://user:pass@example.com/x", "true", "FALSE", "900", "43200", "-1"]).prop_map(String::from),
        1 => Just(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"iot.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#.to_string()),
    ]
}

fn form(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn query_arbitrary_bytes(data in arbitrary_bytes()) {
        fuzzing::query(&data);
    }

    #[test]
    fn query_near_valid(
        service in select(vec![QueryService::Sts, QueryService::Iam, QueryService::Sns]),
        is_form in any::<bool>(),
        method in select(vec!["POST", "POST", "GET", "PUT"]),
        action in prop_oneof![5 => select(QUERY_ACTIONS.to_vec()).prop_map(String::from), 1 => nasty_string()],
        version in prop_oneof![3 => select(vec!["2011-06-15", "2010-05-08", "2010-03-31"]).prop_map(|v| Some(v.to_string())), 1 => Just(None), 1 => nasty_string().prop_map(Some)],
        named in vec((select(QUERY_NAMES.to_vec()).prop_map(String::from), query_value()), 0..8),
        indexed in vec((indexed_name(), query_value()), 0..8),
        split in any::<u8>(),
    ) {
        let mut pairs = vec![("Action".to_string(), action)];
        if let Some(v) = version {
            pairs.push(("Version".to_string(), v));
        }
        pairs.extend(named);
        pairs.extend(indexed);
        // Some parameters in the query string, the rest in the form body.
        let cut = usize::from(split) % (pairs.len() + 1);
        let (in_query, in_body) = pairs.split_at(cut);
        fuzzing::query(&fuzzing::query_input(service, is_form, method, &form(in_query), form(in_body).as_bytes()));
    }
}

// ---------------------------------------------------------------------------------------------
// S3

fn policy_doc() -> impl Strategy<Value = String> {
    let principal = prop_oneof![
        Just(json!("*")),
        Just(json!({"AWS": "arn:aws:iam::210987654321:user/fuzz"})),
        Just(json!({"AWS": ["210987654321", "arn:aws:iam::*:root"]})),
        Just(json!({"Service": "cloudtrail.amazonaws.com"})),
        json_value(&["AWS", "Service", "Federated"]),
    ];
    let action = prop_oneof![Just(json!("s3:*")), Just(json!(["s3:GetObject", "s3:Put*"])), Just(json!("s3:?etObject")), nasty_string().prop_map(Value::String)];
    let resource = prop_oneof![Just(json!("arn:aws:s3:::b/*")), Just(json!(["arn:aws:s3:::*", "*"])), nasty_string().prop_map(Value::String)];
    let condition = prop_oneof![
        Just(Value::Null),
        (select(vec!["StringEquals", "StringLike", "StringNotLike", "ArnLike", "Bool", "StringEqualsIfExists", "NumericLessThan", "ForAnyValue:StringLike"]), nasty_string())
            .prop_map(|(op, v)| json!({op: {"aws:PrincipalArn": v}})),
    ];
    let statement = (select(vec!["Allow", "Deny", "allow", ""]), principal, action, resource, condition, any::<bool>()).prop_map(|(e, p, a, r, c, not)| {
        let mut s = json!({"Effect": e, "Principal": p, "Resource": r});
        s[if not { "NotAction" } else { "Action" }] = a;
        if !c.is_null() {
            s["Condition"] = c;
        }
        s
    });
    prop_oneof![
        4 => (select(vec!["2012-10-17", "2008-10-17", "2020-01-01"]), vec(statement, 0..4)).prop_map(|(v, s)| json!({"Version": v, "Statement": s}).to_string()),
        1 => json_body(&["Version", "Id", "Statement", "Effect", "Principal", "Action", "NotAction", "Resource", "Condition", "Sid"]).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn lifecycle_xml() -> impl Strategy<Value = String> {
    let days = prop_oneof![3 => (0i64..4000).prop_map(|d| d.to_string()), 1 => select(vec!["-1", "2147483648", "99999999999999999999", "1.5", ""]).prop_map(String::from)];
    let rule = (nasty_string(), select(vec!["Enabled", "Disabled", "enabled", ""]), days.clone(), days, select(vec!["GLACIER", "STANDARD_IA", "DEEP_ARCHIVE", ""]), any::<bool>())
        .prop_map(|(prefix, status, exp, tr, class, filter)| {
            let prefix = prefix.replace('&', "&amp;").replace('<', "&lt;");
            let p = if filter { format!("<Filter><Prefix>{prefix}</Prefix></Filter>") } else { format!("<Prefix>{prefix}</Prefix>") };
            format!("<Rule><ID>r</ID>{p}<Status>{status}</Status><Expiration><Days>{exp}</Days></Expiration><Transition><Days>{tr}</Days><StorageClass>{class}</StorageClass></Transition></Rule>")
        });
    prop_oneof![
        5 => vec(rule, 0..4).prop_map(|r| format!("<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{}</LifecycleConfiguration>", r.concat())),
        1 => (1usize..2000).prop_map(|d| format!("<LifecycleConfiguration>{}{}</LifecycleConfiguration>", "<Rule>".repeat(d), "</Rule>".repeat(d))),
        1 => nasty_string(),
    ]
}

fn complete_xml() -> impl Strategy<Value = String> {
    let n = prop_oneof![4 => (0i64..12).prop_map(|n| n.to_string()), 1 => select(vec!["-1", "10001", "2147483648", "x", ""]).prop_map(String::from)];
    prop_oneof![
        5 => vec((n, "[0-9a-f]{0,32}"), 0..5).prop_map(|p| format!(
            "<CompleteMultipartUpload>{}</CompleteMultipartUpload>",
            p.iter().map(|(n, e)| format!("<Part><PartNumber>{n}</PartNumber><ETag>\"{e}\"</ETag></Part>")).collect::<String>()
        )),
        1 => nasty_string(),
    ]
}

fn range_header() -> impl Strategy<Value = String> {
    let n = prop_oneof![3 => (0u64..2_000_000).prop_map(|n| n.to_string()), 1 => select(vec!["18446744073709551615", "18446744073709551616", "", "-0"]).prop_map(String::from)];
    prop_oneof![
        2 => (n.clone(), n.clone()).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        1 => n.clone().prop_map(|a| format!("bytes={a}-")),
        1 => n.prop_map(|b| format!("bytes=-{b}")),
        1 => nasty_string(),
    ]
}

fn http_date() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (1u32..29, select(vec!["Jan", "Feb", "Dec"]), 1970u32..2100, 0u32..24).prop_map(|(d, m, y, h)| format!("Sun, {d:02} {m} {y} {h:02}:00:00 GMT")),
        1 => nasty_string(),
    ]
}

#[derive(Debug)]
struct S3Case {
    policy: String,
    arn: String,
    action: String,
    bucket: String,
    key: String,
    lifecycle: String,
    complete: String,
    range: String,
    if_match: String,
    if_none_match: String,
    ims: String,
    ius: String,
    copy_source: String,
    token: String,
    part_number: i64,
    size: u64,
}

/// Sub-strategies are boxed: a flat 16-way tuple's value tree overflows a debug test thread's
/// stack.
fn s3_case() -> BoxedStrategy<S3Case> {
    let who = (
        policy_doc().boxed(),
        prop_oneof![Just("arn:aws:iam::210987654321:user/fuzz".to_string()), nasty_string()].boxed(),
        select(vec!["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:getobject", ""]).prop_map(String::from).boxed(),
        prop_oneof!["[a-z0-9.-]{0,70}", nasty_string()].boxed(),
        prop_oneof![3 => "[A-Za-z0-9/._ -]{0,40}", 1 => nasty_string(), 1 => (1000usize..1100).prop_map(|n| "k".repeat(n))].boxed(),
    )
        .boxed();
    let bodies = (lifecycle_xml().boxed(), complete_xml().boxed(), range_header().boxed()).boxed();
    let conditions = (
        prop_oneof![Just("*".to_string()), "\"[0-9a-f]{32}\"", nasty_string()].boxed(),
        prop_oneof![Just("\"d41d8cd98f00b204e9800998ecf8427e\"".to_string()), nasty_string()].boxed(),
        http_date().boxed(),
        http_date().boxed(),
    )
        .boxed();
    let rest = (
        prop_oneof!["/?[a-z0-9.-]{3,20}/[A-Za-z0-9%/._-]{1,30}(\\?versionId=[a-z0-9]{0,8})?", nasty_string()].boxed(),
        prop_oneof!["[A-Za-z0-9_-]{0,40}", nasty_string()].boxed(),
        prop_oneof![-2i64..10_003, any::<i64>()].boxed(),
        any::<u64>(),
    )
        .boxed();
    (who, bodies, conditions, rest)
        .prop_map(|((policy, arn, action, bucket, key), (lifecycle, complete, range), (if_match, if_none_match, ims, ius), (copy_source, token, part_number, size))| S3Case {
            policy, arn, action, bucket, key, lifecycle, complete, range, if_match, if_none_match, ims, ius, copy_source, token, part_number, size,
        })
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn s3_arbitrary_bytes(data in arbitrary_bytes()) {
        fuzzing::s3_request(&data);
    }

    #[test]
    fn s3_near_valid(c in s3_case()) {
        let input = fuzzing::S3Input {
            policy: c.policy.as_bytes(),
            principal_arn: c.arn.as_bytes(),
            action: c.action.as_bytes(),
            bucket: c.bucket.as_bytes(),
            key: c.key.as_bytes(),
            lifecycle_xml: c.lifecycle.as_bytes(),
            complete_xml: c.complete.as_bytes(),
            range: c.range.as_bytes(),
            if_match: c.if_match.as_bytes(),
            if_none_match: c.if_none_match.as_bytes(),
            if_modified_since: c.ims.as_bytes(),
            if_unmodified_since: c.ius.as_bytes(),
            copy_source: c.copy_source.as_bytes(),
            continuation_token: c.token.as_bytes(),
            part_number: c.part_number,
            size: c.size,
        };
        fuzzing::s3_request(&input.encode());
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// The seed corpus in `fuzz/seeds/<target>/` is made of valid-looking inputs; every one must run
/// clean (so a seed is never a crash waiting in the corpus).
#[test]
fn seed_corpus_runs_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let Ok(dirs) = std::fs::read_dir(&root) else { return };
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let Some((_, target)) = fuzzing::TARGETS.iter().find(|(n, _)| *n == name) else { continue };
        for file in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let bytes = std::fs::read(file.path()).expect("seed readable");
            target(&bytes);
        }
    }
}

/// Writes the seed corpus (`cargo test -p otatrail --test hostile_input -- --ignored
/// write_seed_corpus`): a few valid requests per target, built with the same encoders.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the input layout changes"]
fn write_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    let write = |target: &str, name: &str, bytes: Vec<u8>| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDFUZZEXAMPLE/20240301/us-east-1/iot/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
    write("sigv4", "iot_get", fuzzing::sigv4_input(0, auth, "20240301T120000Z", "GET", "/things/t1", "maxResults=2&nextToken=a%2Fb", "host: otatrail.test:4566\ncontent-type: application/json", "", b""));
    write("sigv4", "cloudtrail_post", fuzzing::sigv4_input(6, &auth.replace("/iot/", "/cloudtrail/"), "20240301T120000Z", "POST", "/", "", "host: otatrail.test:4566\nx-amz-target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents", "FwoGZXIvYXdzEBYaDH", b"{}"));
    write("sigv4", "dot_segments", fuzzing::sigv4_input(3, auth, "20240301T120000Z", "PUT", "/a/./b/../c%3Ad//e", "X-Amz-Signature=x&b=2&a=1&a=0", "host: h\nx-amz-meta-a:  two   spaces ", "", b"body"));
    write("rest_json", "create_stream", fuzzing::rest_json_input("POST", "/streams/s1", "", br#"{"description":"d","files":[{"fileId":0,"s3Location":{"bucket":"b","key":"k"}}],"roleArn":"arn:aws:iam::123456789012:role/r"}"#));
    write("rest_json", "create_thing", fuzzing::rest_json_input("POST", "/things/t%3A1", "", br#"{"thingTypeName":"sensor","attributePayload":{"attributes":{"a":"b"}}}"#));
    write("rest_json", "list_things", fuzzing::rest_json_input("GET", "/things", "maxResults=10&usePrefixAttributeValue=true&attributeName=a", b""));
    write("rest_json", "create_job", fuzzing::rest_json_input("PUT", "/jobs/j1", "", br#"{"targets":["arn:aws:iot:us-east-1:123456789012:thing/t1"],"document":"{\"op\":\"x\"}","targetSelection":"SNAPSHOT","jobExecutionsRolloutConfig":{"maximumPerMinute":10},"abortConfig":{"criteriaList":[{"failureType":"FAILED","action":"CANCEL","thresholdPercentage":50,"minNumberOfExecutedThings":1}]},"timeoutConfig":{"inProgressTimeoutInMinutes":10}}"#));
    write("rest_json", "delete_execution", fuzzing::rest_json_input("DELETE", "/things/t1/jobs/j1/executionNumber/3", "force=true&namespaceId=ns", b""));
    write("rest_json", "create_ota", fuzzing::rest_json_input("POST", "/otaUpdates/u1", "", br#"{"targets":["arn:aws:iot:us-east-1:123456789012:thinggroup/g"],"protocols":["MQTT"],"files":[{"fileName":"fw.bin","fileLocation":{"s3Location":{"bucket":"b","key":"fw.bin"}},"codeSigning":{"customCodeSigning":{"signature":{"inlineDocument":"AAAA"},"certificateChain":{"certificateName":"c"},"hashAlgorithm":"SHA256","signatureAlgorithm":"ECDSA"}}}],"roleArn":"arn:aws:iam::123456789012:role/ota"}"#));
    write("rest_json", "add_to_group", fuzzing::rest_json_input("PUT", "/thing-groups/addThingToThingGroup", "", br#"{"thingGroupName":"g","thingName":"t1"}"#));
    write("json_1_1", "lookup_events", fuzzing::json_1_1_input(true, "POST", "/", "LookupEvents", br#"{"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"CreateThing"}],"StartTime":1700000000,"EndTime":1700003600.5,"MaxResults":5}"#));
    write("json_1_1", "create_trail", fuzzing::json_1_1_input(true, "POST", "/", "CreateTrail", br#"{"Name":"t","S3BucketName":"b","S3KeyPrefix":"p","IsMultiRegionTrail":true,"EnableLogFileValidation":true,"TagsList":[{"Key":"k","Value":"v"}]}"#));
    write("json_1_1", "put_selectors", fuzzing::json_1_1_input(true, "POST", "/", "PutEventSelectors", br#"{"TrailName":"t","AdvancedEventSelectors":[{"Name":"n","FieldSelectors":[{"Field":"eventCategory","Equals":["Management"]},{"Field":"readOnly","Equals":["false"]}]}]}"#));
    write("json_1_1", "list_public_keys", fuzzing::json_1_1_input(true, "POST", "/", "ListPublicKeys", br#"{"StartTime":1,"EndTime":2}"#));
    write("query", "assume_role", fuzzing::query_input(QueryService::Sts, true, "POST", "", b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr&RoleSessionName=s&DurationSeconds=900&Tags.member.1.Key=k&Tags.member.1.Value=v"));
    write("query", "create_role", fuzzing::query_input(QueryService::Iam, true, "POST", "", b"Action=CreateRole&Version=2010-05-08&RoleName=r&AssumeRolePolicyDocument=%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D&MaxSessionDuration=3600&Tags.member.1.Key=a&Tags.member.1.Value=b"));
    write("query", "untag_user", fuzzing::query_input(QueryService::Iam, false, "GET", "Action=UntagUser&UserName=u&TagKeys.member.1=a&TagKeys.member.2=b", b""));
    write("query", "sns_subscribe", fuzzing::query_input(QueryService::Sns, true, "POST", "", b"Action=Subscribe&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3At&Protocol=https&Endpoint=https%3A%2F%2Fu%3Ap%40example.com%2Fx&Attributes.entry.1.key=RawMessageDelivery&Attributes.entry.1.value=true&ReturnSubscriptionArn=TRUE"));
    write("query", "sns_publish", fuzzing::query_input(QueryService::Sns, true, "POST", "", b"Action=Publish&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3At&Message=hi&Subject=s"));
    write("s3_request", "everything", fuzzing::S3Input {
        policy: br#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::210987654321:user/fuzz"},"Action":["s3:GetObject","s3:Put*"],"Resource":"arn:aws:s3:::my-bucket/*","Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::210987654321:*"}}}]}"#,
        principal_arn: b"arn:aws:iam::210987654321:user/fuzz",
        action: b"s3:GetObject",
        bucket: b"my-bucket",
        key: b"fw/v1 image.bin",
        lifecycle_xml: b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration><Transition><Days>7</Days><StorageClass>GLACIER</StorageClass></Transition></Rule></LifecycleConfiguration>",
        complete_xml: b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"d41d8cd98f00b204e9800998ecf8427e\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"aa\"</ETag></Part></CompleteMultipartUpload>",
        range: b"bytes=0-99",
        if_match: b"\"d41d8cd98f00b204e9800998ecf8427e\"",
        if_none_match: b"*",
        if_modified_since: b"Sun, 06 Nov 1994 08:49:37 GMT",
        if_unmodified_since: b"Sun, 06 Nov 2044 08:49:37 GMT",
        copy_source: b"/src-bucket/a%2Fb.bin?versionId=1",
        continuation_token: b"ZncvdjEgaW1hZ2UuYmlu",
        part_number: 3,
        size: 1000,
    }.encode());
}

// ---------------------------------------------------------------------------------------------
// Regressions: inputs that crashed a target (see fuzz/README.md).


/// `Tags.member.0` underflowed `i - 1` in `api::call::query_request_parameters` (a panic on any
/// signed IAM/STS call), and a huge member index padded the recorded list with that many nulls.
#[test]
fn regression_query_member_index_zero_and_huge() {
    for query in ["Action=GetCallerIdentity&Version=2010-05-08&Tags.member.0=", "Action=ListUsers&TagKeys.member.0.Key=x"] {
        fuzzing::query(&fuzzing::query_input(QueryService::Iam, false, "POST", query, b""));
        fuzzing::query(&fuzzing::query_input(QueryService::Sts, true, "POST", "", query.as_bytes()));
    }
    // 2^62 members: before the fix, an allocation of 2^67 bytes.
    let huge = "Action=GetCallerIdentity&Tags.member.4611686018427387904.Key=k";
    fuzzing::query(&fuzzing::query_input(QueryService::Sts, true, "POST", huge, b""));
    // The same, as raw fuzz bytes (selector, method, query, body).
    fuzzing::query(b"\x01\x04\x00POST\x3a\x00Action=GetCallerIdentity&Version=2010-05-08&Tags.member.0=");
}
