-- Provider requests that an adapter accepted but could not use (a signed webhook whose
-- fields no event can hold) are set aside on ``switchboard.dlq`` by the adapter, which
-- needs only the broker to accept webhooks; a recorder in the adapters process copies them
-- here for operators. ``source`` says who set a row aside when it was not the router or
-- the egress reading ``topic`` (``webhook/<provider>``); such a row's ``topic``,
-- ``partition`` and ``offset`` locate its copy on the dead-letter topic, unique so that the
-- recorder can copy a record again after a crash without doubling it.
ALTER TABLE dead_letters ADD COLUMN source text;
CREATE UNIQUE INDEX dead_letters_recorded
    ON dead_letters (topic, partition, "offset") WHERE source IS NOT NULL;
