-- things_by_type served no query: ListThings filtered on `(? IS NULL OR thing_type_name = ?)`,
-- which no index can serve, and walked the scope's things in name order; yet every
-- CreateThing wrote it (a new entry at the end of the scope's untyped things). It now holds
-- only typed things, in name order within a type, and ListThings with a type filter reads it.
DROP INDEX things_by_type;
CREATE INDEX things_by_type ON things (account_id, region, thing_type_name, thing_name) WHERE thing_type_name IS NOT NULL;
