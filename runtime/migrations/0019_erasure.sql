-- Customer erasure (router.engine.erasure, router.shell.erasure): the API writes the
-- request, the router reads whom it names when it applies the command, deletes every row
-- about them in its batch transaction, then empties the request's personal columns and
-- keeps what it did.
CREATE TABLE erasures (
    domain            text NOT NULL,
    erasure_id        text NOT NULL,
    identities        text[] NOT NULL,
    conversation_ids  text[] NOT NULL,
    requested_by      text NOT NULL,
    requested_at      timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    erased            jsonb,
    PRIMARY KEY (domain, erasure_id)
);

-- The rows an erasure deletes, found through indexes so that its statements stay short
-- inside the router's batch transaction. The replay log names a customer or conversation
-- in its payload; the partial indexes hold only the records that have the field.
CREATE INDEX agent_events_by_customer
    ON agent_events (domain, (payload->>'customer_id')) WHERE payload ? 'customer_id';
CREATE INDEX agent_events_by_conversation
    ON agent_events (domain, (payload->>'conversation_id')) WHERE payload ? 'conversation_id';
CREATE INDEX agent_events_by_identity
    ON agent_events (domain, (payload->>'identity')) WHERE payload ? 'identity';
CREATE INDEX agent_events_by_merged
    ON agent_events (domain, (payload->>'from_customer_id')) WHERE payload ? 'from_customer_id';
CREATE INDEX consents_by_customer ON consents (domain, customer_id);
CREATE INDEX consents_by_address ON consents (domain, address);
CREATE INDEX consent_changes_by_customer ON consent_changes (domain, customer_id);
CREATE INDEX consent_changes_by_any_address ON consent_changes (domain, address);
