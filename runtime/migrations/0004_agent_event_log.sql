-- Every agents.events record the router applied, appended in the batch transaction that
-- applied it: with the inbound `messages` rows, the input `switchboard replay` feeds back
-- to the engine. `applied_at` is the batch transaction's time, like `messages.created_at`.
CREATE TABLE agent_events (
    domain       text NOT NULL,
    seq          bigserial NOT NULL,
    event_id     text NOT NULL,
    type         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    payload      jsonb NOT NULL,
    PRIMARY KEY (domain, seq)
);
CREATE INDEX agent_events_by_time ON agent_events (domain, applied_at);
