-- Identities: accounts, IAM users and access keys (secrets sealed with the server's master key).
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    user_id     TEXT NOT NULL UNIQUE,
    path        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE access_keys (
    access_key_id  TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    user_name      TEXT,
    status         TEXT NOT NULL,
    sealed_secret  BLOB NOT NULL,
    created_at     INTEGER NOT NULL
);

-- OTA streams. `seq` orders listings and anchors pagination tokens.
CREATE TABLE streams (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   TEXT NOT NULL,
    region       TEXT NOT NULL,
    stream_id    TEXT NOT NULL,
    description  TEXT,
    version      INTEGER NOT NULL,
    files        TEXT NOT NULL,
    role_arn     TEXT NOT NULL,
    tags         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (account_id, region, stream_id)
);

-- Which OTA updates reference which streams.
CREATE TABLE ota_stream_uses (
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    ota_update_id  TEXT NOT NULL,
    stream_id      TEXT NOT NULL,
    PRIMARY KEY (account_id, region, ota_update_id, stream_id)
);
CREATE INDEX ota_stream_uses_by_stream ON ota_stream_uses (account_id, region, stream_id);
