-- Keys that seal records about a customer on the topics (runtime.sealing): one per
-- subject (a customer identity, a conversation, a thread or a sent message: its SHA-256,
-- runtime.sealing.subject_digest) and day. Erasing the customer deletes their keys, or
-- takes their subject away and deletes them once kafka.key_shred_delay_seconds have
-- passed (shred_at): the records sealed with them can no longer be opened, wherever they
-- are. Keys older than the topics' retention are deleted by the retention job (by_age).
-- A spare key is made by a producer ahead of a PostgreSQL outage, with no domain or
-- subject until it is used and named.
CREATE TABLE topic_keys (
    key_id      uuid PRIMARY KEY,
    domain      text,
    subject     bytea CHECK (octet_length(subject) = 32),
    period      integer,
    key         bytea NOT NULL CHECK (octet_length(key) = 32),
    spare       boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    shred_at    timestamptz
);
CREATE UNIQUE INDEX topic_keys_by_subject ON topic_keys (domain, subject, period) WHERE NOT spare;
CREATE INDEX topic_keys_of_subject ON topic_keys (domain, subject);
CREATE INDEX topic_keys_to_shred ON topic_keys (shred_at) WHERE shred_at IS NOT NULL;
CREATE INDEX topic_keys_by_age ON topic_keys (created_at);

-- A dead letter of a sealed record keeps its key's id, so that a redrive publishes it
-- sealed as it came (and an erased customer's stays unreadable).
ALTER TABLE dead_letters ADD COLUMN sealed_with bytea CHECK (octet_length(sealed_with) <= 16);
