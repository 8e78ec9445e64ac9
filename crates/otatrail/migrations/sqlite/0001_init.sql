-- Identities: accounts, IAM users and access keys (secrets sealed with the server's master key).
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

-- IAM names are unique without regard to case, and keep the case they were created with.
CREATE TABLE users (
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL COLLATE NOCASE,
    user_id     TEXT NOT NULL UNIQUE,
    path        TEXT NOT NULL,
    tags        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE roles (
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    name                  TEXT NOT NULL COLLATE NOCASE,
    role_id               TEXT NOT NULL UNIQUE,
    path                  TEXT NOT NULL,
    description           TEXT,
    assume_role_policy    TEXT NOT NULL,
    max_session_duration  INTEGER NOT NULL,
    tags                  TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- Temporary credentials from STS: the principal they act as is fixed at issue (JSON).
CREATE TABLE sessions (
    access_key_id  TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    sealed_secret  BLOB NOT NULL,
    token_sha256   TEXT NOT NULL,
    principal      TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE access_keys (
    access_key_id  TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    user_name      TEXT COLLATE NOCASE,
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
