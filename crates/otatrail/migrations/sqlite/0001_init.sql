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

-- The audit history: one row per CloudTrail record, in commit order (`seq`). `record` is the
-- record's JSON text, exactly as LookupEvents returns it and log files carry it.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    event_time     INTEGER NOT NULL,
    event_name     TEXT NOT NULL,
    event_source   TEXT NOT NULL,
    read_only      INTEGER NOT NULL,
    username       TEXT,
    access_key_id  TEXT,
    record         TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (account_id, region, event_time, seq);
CREATE INDEX events_by_name ON events (account_id, region, event_name, event_time, seq);
CREATE INDEX events_by_source ON events (account_id, region, event_source, event_time, seq);
CREATE INDEX events_by_username ON events (account_id, region, username, event_time, seq);
CREATE INDEX events_by_access_key ON events (account_id, region, access_key_id, event_time, seq);
CREATE INDEX events_by_read_only ON events (account_id, region, read_only, event_time, seq);

CREATE TABLE event_resources (
    seq            INTEGER NOT NULL REFERENCES events(seq),
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    event_time     INTEGER NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_name  TEXT NOT NULL
);
CREATE INDEX event_resources_by_type ON event_resources (account_id, region, resource_type, event_time, seq);
CREATE INDEX event_resources_by_name ON event_resources (account_id, region, resource_name, event_time, seq);

-- Buckets belong to accounts; names are global, as in S3.
CREATE TABLE buckets (
    name        TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    region      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    policy      TEXT,
    lifecycle   TEXT
);
CREATE INDEX buckets_by_account ON buckets (account_id, name);

-- Objects of the embedded store. The bytes live encrypted in blob files; `blobs` lists them
-- in order (one for a simple put, one per part for a multipart upload). Keys compare as bytes.
CREATE TABLE objects (
    bucket         TEXT NOT NULL,
    key            TEXT NOT NULL,
    size           INTEGER NOT NULL,
    etag           TEXT NOT NULL,
    content_type   TEXT,
    metadata       TEXT NOT NULL,
    last_modified  INTEGER NOT NULL,
    storage_class  TEXT NOT NULL,
    blobs          TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE uploads (
    upload_id     TEXT PRIMARY KEY,
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    content_type  TEXT,
    metadata      TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE upload_parts (
    upload_id    TEXT NOT NULL,
    part_number  INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    etag         TEXT NOT NULL,
    blob         TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

-- CloudTrail trails; `trail` is the trail's settings and status as JSON.
CREATE TABLE trails (
    account_id   TEXT NOT NULL,
    home_region  TEXT NOT NULL,
    name         TEXT NOT NULL,
    trail        TEXT NOT NULL,
    PRIMARY KEY (account_id, home_region, name)
);

-- Delivery progress per trail and source region: every record up to `last_seq` is either in a
-- delivered file or was not selected. `pending` is a file being written: its key and the
-- records it holds, so a restart writes exactly that file and nothing twice.
CREATE TABLE trail_cursors (
    account_id   TEXT NOT NULL,
    home_region  TEXT NOT NULL,
    name         TEXT NOT NULL,
    region       TEXT NOT NULL,
    last_seq     INTEGER NOT NULL,
    pending      TEXT,
    PRIMARY KEY (account_id, home_region, name, region)
);

-- Per-region RSA-2048 key pairs that sign digest files. The private key is sealed with the
-- master key; the public key is kept as DER (PKCS#1), as ListPublicKeys returns it.
CREATE TABLE signing_keys (
    region          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    public_der      BLOB NOT NULL,
    sealed_private  BLOB NOT NULL,
    valid_from      INTEGER NOT NULL,
    valid_to        INTEGER NOT NULL,
    PRIMARY KEY (region, fingerprint)
);

-- Log files as delivered, in order, for the trail's digests.
CREATE TABLE delivered_files (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    TEXT NOT NULL,
    home_region   TEXT NOT NULL,
    name          TEXT NOT NULL,
    region        TEXT NOT NULL,
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    oldest_event  INTEGER NOT NULL,
    newest_event  INTEGER NOT NULL,
    delivered_at  INTEGER NOT NULL
);
CREATE INDEX delivered_files_by_trail ON delivered_files (account_id, home_region, name, region, seq);

-- The digest chain of a trail in a region: the last digest written, and a digest being
-- written (`pending`), so a restart completes it rather than starting another.
CREATE TABLE digest_state (
    account_id   TEXT NOT NULL,
    home_region  TEXT NOT NULL,
    name         TEXT NOT NULL,
    region       TEXT NOT NULL,
    state        TEXT NOT NULL,
    PRIMARY KEY (account_id, home_region, name, region)
);
