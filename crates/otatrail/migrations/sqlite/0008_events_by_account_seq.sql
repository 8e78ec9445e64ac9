-- Delivery reads an account and region's records after its cursor, in sequence order. No index
-- served that: SQLite walked every record of the account through another index and sorted
-- them, 60 ms per delivery pass at 750,000 records and growing with the history.
CREATE INDEX events_by_account_seq ON events (account_id, region, seq);
