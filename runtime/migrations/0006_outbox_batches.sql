-- The outbox keeps one row per batch transaction and input partition, its events packed in
-- one msgpack array of [topic, key, value, headers]: a batch's events are published together
-- and deleted together once the broker acknowledged all of them, so a row (and three index
-- entries) per event was work on the router's hot path that nothing read. Rows are
-- republished in `seq` order by the partition's next owner.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM outbox) THEN
        RAISE EXCEPTION 'the outbox holds unpublished events: start the previous version '
            'of the router until switchboard_outbox_backlog_events is 0, then migrate';
    END IF;
END $$;
DROP TABLE outbox;
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    partition    integer NOT NULL,
    event_count  integer NOT NULL,
    events       bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- Packed events are compact already: stored out of line without compression.
ALTER TABLE outbox ALTER COLUMN events SET STORAGE EXTERNAL;

-- Nothing looks inbound messages up by provider id (retries are recognised by message id,
-- delivery receipts concern outbound_messages): the index only slowed every batch.
DROP INDEX messages_by_provider_id;
