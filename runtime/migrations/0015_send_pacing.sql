-- The pace of business-started messages, shared by every adapter process
-- (adapters/pacing.py), and the status events the sender still owes the router.
--
-- One token bucket per sender (domain, channel, endpoint) and one per domain (channel and
-- endpoint ''). `tokens` is what the bucket held at `refilled_at` (the database's clock:
-- every process reads the same one); a claim refills it by rate x elapsed, up to the
-- burst, and takes whole tokens, under the row's lock (FOR UPDATE). A provider's 429 puts
-- it in debt (negative tokens), so every process waits. `granted` is the last claim's
-- grant. The rates themselves are configuration, passed with each claim.
CREATE TABLE send_buckets (
    domain       text NOT NULL,
    channel      text NOT NULL,
    endpoint     text NOT NULL,
    tokens       double precision NOT NULL,
    refilled_at  timestamptz NOT NULL,
    granted      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, channel, endpoint)
);

-- Set with a notification's final send status (sent, failed) in the same statement, and
-- cleared once its delivery.status event is on conversations.inbound: a process that
-- dies in between leaves it set, and another one publishes it.
ALTER TABLE outbound_messages ADD COLUMN status_unreported boolean NOT NULL DEFAULT false;
CREATE INDEX outbound_status_unreported
    ON outbound_messages (created_at) WHERE status_unreported;

-- Rows an API process wrote but never answered for (it died between writing them and
-- setting them queued): the sender deletes them after a while, so the client's retry
-- with the same client_key is a new send. Normally empty.
CREATE INDEX outbound_accepted ON outbound_messages (created_at) WHERE status = 'accepted';
