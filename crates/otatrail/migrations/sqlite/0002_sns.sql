-- SNS topics of an account in a region; the topic itself (attributes, tags) as JSON.
CREATE TABLE sns_topics (
    account_id  TEXT NOT NULL,
    region      TEXT NOT NULL,
    name        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    PRIMARY KEY (account_id, region, name)
);

-- Subscriptions of HTTP/S endpoints. Only a hash of the confirmation token is kept.
CREATE TABLE sns_subscriptions (
    arn                          TEXT PRIMARY KEY,
    topic_arn                    TEXT NOT NULL,
    owner                        TEXT NOT NULL,
    region                       TEXT NOT NULL,
    protocol                     TEXT NOT NULL,
    endpoint                     TEXT NOT NULL,
    token_sha256                 TEXT NOT NULL,
    token_expires_at             INTEGER NOT NULL,
    confirmed                    INTEGER NOT NULL,
    authenticate_on_unsubscribe  INTEGER NOT NULL,
    created_at                   INTEGER NOT NULL
);
CREATE INDEX sns_subscriptions_by_topic ON sns_subscriptions (topic_arn, arn);
CREATE INDEX sns_subscriptions_by_owner ON sns_subscriptions (owner, region, arn);
CREATE INDEX sns_subscriptions_by_token ON sns_subscriptions (topic_arn, token_sha256);

-- Messages on their way to endpoints: a row until the endpoint answers 2xx (or retries give
-- up). `body` is the JSON message sealed with the master key.
CREATE TABLE sns_deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    region            TEXT NOT NULL,
    account_id        TEXT NOT NULL,
    topic_arn         TEXT NOT NULL,
    subscription_arn  TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    message_type      TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    body              BLOB NOT NULL,
    attempts          INTEGER NOT NULL,
    next_attempt_at   INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX sns_deliveries_due ON sns_deliveries (next_attempt_at, id);
CREATE INDEX sns_deliveries_by_subscription ON sns_deliveries (subscription_arn);
CREATE INDEX sns_deliveries_by_topic ON sns_deliveries (topic_arn);

-- One message-signing certificate per region (private key sealed with the master key).
CREATE TABLE sns_signing_certs (
    region          TEXT PRIMARY KEY,
    fingerprint     TEXT NOT NULL UNIQUE,
    cert_der        BLOB NOT NULL,
    sealed_private  BLOB NOT NULL,
    created_at      INTEGER NOT NULL
);
