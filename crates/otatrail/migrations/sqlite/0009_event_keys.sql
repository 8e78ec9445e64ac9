-- LookupEvents' attribute indexes move off the records: every commit rewrote the last page of
-- each of the eight (six on events, two on event_resources), a third of the pages the log took
-- per commit. Their keys now go to side tables that the writer fills in bulk, a few times a
-- second, from the records not yet copied (`index_backlog` in store/sqlite.rs); LookupEvents
-- reads the side tables up to the last copied record and the few records after it directly.
-- Lookups by event ID keep the records' own unique index.
CREATE TABLE event_keys (
    seq            INTEGER PRIMARY KEY,
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    event_time     INTEGER NOT NULL,
    event_name     TEXT NOT NULL,
    event_source   TEXT NOT NULL,
    read_only      INTEGER NOT NULL,
    username       TEXT,
    access_key_id  TEXT
);
CREATE TABLE event_resource_keys (
    seq            INTEGER NOT NULL,
    account_id     TEXT NOT NULL,
    region         TEXT NOT NULL,
    event_time     INTEGER NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_name  TEXT NOT NULL
);
INSERT INTO event_keys
    SELECT seq, account_id, region, event_time, event_name, event_source, read_only, username, access_key_id FROM events ORDER BY seq;
INSERT INTO event_resource_keys
    SELECT seq, account_id, region, event_time, resource_type, resource_name FROM event_resources ORDER BY seq, rowid;
CREATE INDEX event_keys_by_time ON event_keys (account_id, region, event_time, seq);
CREATE INDEX event_keys_by_name ON event_keys (account_id, region, event_name, event_time, seq);
CREATE INDEX event_keys_by_source ON event_keys (account_id, region, event_source, event_time, seq);
CREATE INDEX event_keys_by_username ON event_keys (account_id, region, username, event_time, seq);
CREATE INDEX event_keys_by_access_key ON event_keys (account_id, region, access_key_id, event_time, seq);
CREATE INDEX event_keys_by_read_only ON event_keys (account_id, region, read_only, event_time, seq);
CREATE INDEX event_resource_keys_by_type ON event_resource_keys (account_id, region, resource_type, event_time, seq);
CREATE INDEX event_resource_keys_by_name ON event_resource_keys (account_id, region, resource_name, event_time, seq);
DROP INDEX events_by_time;
DROP INDEX events_by_name;
DROP INDEX events_by_source;
DROP INDEX events_by_username;
DROP INDEX events_by_access_key;
DROP INDEX events_by_read_only;
DROP INDEX event_resources_by_type;
DROP INDEX event_resources_by_name;
