-- LookupEvents loads each returned event's resources by sequence number; without this index
-- every such load scanned the whole table (hundreds of milliseconds at a million events).
CREATE INDEX event_resources_by_seq ON event_resources (seq);
