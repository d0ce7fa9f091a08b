-- Dead letters are kept for an operator to inspect and, once the cause is fixed (a domain
-- added to the configuration, a new version that reads the record), to re-drive: the
-- record is published again to the topic it came from and the row remembers when. The
-- domain is the record's key when it is one (every record of ours is keyed by domain);
-- it is stored apart (only when it is short valid UTF-8: a hostile key must not break the
-- index) so that a domain's admin lists only that domain's dead letters. Rows from before
-- this version have no domain: the CLI, which sees every domain, lists them.
ALTER TABLE dead_letters
    ADD COLUMN domain       text,
    ADD COLUMN redriven_at  timestamptz,
    ADD COLUMN redrives     integer NOT NULL DEFAULT 0;
CREATE INDEX dead_letters_by_domain ON dead_letters (domain, id);
