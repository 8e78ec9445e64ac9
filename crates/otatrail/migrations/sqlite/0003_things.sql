-- The IoT registry: things, static thing groups and which things are in which groups, per
-- account and region. Names are case-sensitive; listings order them as bytes.

-- `attributes` is a JSON object (attribute name -> value); ListThings filters on it.
CREATE TABLE things (
    account_id       TEXT NOT NULL,
    region           TEXT NOT NULL,
    thing_name       TEXT NOT NULL,
    thing_id         TEXT NOT NULL UNIQUE,
    thing_type_name  TEXT,
    attributes       TEXT NOT NULL,
    version          INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, thing_name)
);
CREATE INDEX things_by_type ON things (account_id, region, thing_type_name);

-- A group's parent is fixed at creation and must exist; a parent with children cannot be
-- deleted (the domain refuses first, the foreign key is the backstop).
CREATE TABLE thing_groups (
    account_id   TEXT NOT NULL,
    region       TEXT NOT NULL,
    group_name   TEXT NOT NULL,
    group_id     TEXT NOT NULL UNIQUE,
    parent_name  TEXT,
    description  TEXT,
    attributes   TEXT NOT NULL,
    tags         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, group_name),
    FOREIGN KEY (account_id, region, parent_name) REFERENCES thing_groups (account_id, region, group_name)
);
CREATE INDEX thing_groups_by_parent ON thing_groups (account_id, region, parent_name);

-- Deleting a thing or a group removes its memberships.
CREATE TABLE thing_group_members (
    account_id  TEXT NOT NULL,
    region      TEXT NOT NULL,
    group_name  TEXT NOT NULL,
    thing_name  TEXT NOT NULL,
    added_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, group_name, thing_name),
    FOREIGN KEY (account_id, region, group_name) REFERENCES thing_groups (account_id, region, group_name) ON DELETE CASCADE,
    FOREIGN KEY (account_id, region, thing_name) REFERENCES things (account_id, region, thing_name) ON DELETE CASCADE
);
CREATE INDEX thing_group_members_by_thing ON thing_group_members (account_id, region, thing_name);
