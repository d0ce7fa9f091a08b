-- Business-started messages (notifications, reminders, campaigns) and customers' consent.
--
-- A business-started message is an outbound_messages row of kind 'notification': the API
-- writes it (with the message in `messages`, so it is in the customer's history) and the
-- adapters' sender sends the rows at the domain's pace. Its status goes
--   accepted (written; its events are being published: not to be sent yet)
--   -> queued -> sending (claimed until lease_until) -> sent -> delivered -> read
-- or ends refused (the address opted out meanwhile), cancelled (its campaign was),
-- undelivered or failed. `request` is the notification.requested record the sender sends.
ALTER TABLE outbound_messages
    ALTER COLUMN agent_id DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'reply' CHECK (kind IN ('reply', 'notification')),
    ADD COLUMN customer_id text,
    ADD COLUMN endpoint text,
    ADD COLUMN campaign_id text,
    ADD COLUMN client_key text,
    ADD COLUMN request bytea,
    ADD COLUMN send_after timestamptz,
    ADD COLUMN lease_until timestamptz;

-- A client's idempotency key names one send per domain.
CREATE UNIQUE INDEX outbound_by_client_key
    ON outbound_messages (domain, client_key) WHERE client_key IS NOT NULL;
-- What the sender has to send, per sender, oldest first; finished rows leave the index.
CREATE INDEX outbound_to_send
    ON outbound_messages (domain, channel, endpoint, created_at)
    WHERE kind = 'notification' AND status IN ('queued', 'sending');
-- A customer's history, and a campaign's progress.
CREATE INDEX outbound_notifications_by_customer
    ON outbound_messages (domain, customer_id, created_at) WHERE kind = 'notification';
CREATE INDEX outbound_by_campaign
    ON outbound_messages (domain, campaign_id, status) WHERE campaign_id IS NOT NULL;

CREATE TABLE campaigns (
    domain       text NOT NULL,
    campaign_id  text NOT NULL,
    name         text NOT NULL DEFAULT '',
    status       text NOT NULL CHECK (status IN ('running', 'paused', 'cancelled')),
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, campaign_id)
);

-- The router writes both (customer.consent_changed): the current consent per channel
-- address, and every change for the audit trail.
CREATE TABLE consents (
    domain       text NOT NULL,
    channel      text NOT NULL,
    address      text NOT NULL,
    customer_id  text NOT NULL,
    consent      text NOT NULL CHECK (consent IN ('opt_in', 'opt_out')),
    source       text NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (domain, channel, address)
);

CREATE TABLE consent_changes (
    domain       text NOT NULL,
    change_id    text NOT NULL,
    channel      text NOT NULL,
    address      text NOT NULL,
    customer_id  text NOT NULL,
    consent      text NOT NULL,
    source       text NOT NULL,
    message_id   text,
    actor        text,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (domain, change_id)
);
CREATE INDEX consent_changes_by_address ON consent_changes (domain, channel, address, changed_at);
