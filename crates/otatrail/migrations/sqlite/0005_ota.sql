-- OTA updates, per account and region.

-- `spec` is the JSON of `domain::ota::OtaSpec`: the request as sent, the state machine's
-- progress (stream and job created, signatures made) and `errorInfo`. `seq` orders
-- ListOTAUpdates (newest first).
CREATE TABLE ota_updates (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    ota_update_id  TEXT NOT NULL,
    status         TEXT NOT NULL,
    spec           TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (account_id, region, ota_update_id)
);
CREATE INDEX ota_updates_by_status ON ota_updates (status);
