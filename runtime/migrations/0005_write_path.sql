-- The router rewrites a conversation's row whenever its customer writes. Room on each
-- page lets PostgreSQL update such rows in place (HOT: no index maintenance when no
-- indexed column changes), and the engine's snapshots are stored as json: checked but not
-- re-encoded on every write. Readers use ->> and ::text, which json supports alike.
ALTER TABLE conversations SET (fillfactor = 70);
ALTER TABLE agents SET (fillfactor = 70);
ALTER TABLE customers SET (fillfactor = 70);
ALTER TABLE conversations ALTER COLUMN record TYPE json USING record::json;
ALTER TABLE agents ALTER COLUMN record TYPE json USING record::json;
ALTER TABLE customers ALTER COLUMN record TYPE json USING record::json;
ALTER TABLE assignments ALTER COLUMN record TYPE json USING record::json;
ALTER TABLE outbox ALTER COLUMN headers TYPE json USING headers::json;
