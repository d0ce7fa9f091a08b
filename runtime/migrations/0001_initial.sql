-- Switchboard's tables. Every table leads its primary key with the routing domain, so
-- that the data can be distributed by domain (Citus, or one database per group of
-- domains) without changing the router. ``record`` columns hold the routing engine's
-- latest snapshot; the other columns are projections for SQL readers and indexes.

CREATE TABLE domains (
    domain      text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    domain      text NOT NULL,
    agent_id    text NOT NULL,
    name        text NOT NULL DEFAULT '',
    presence    text NOT NULL,
    record      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, agent_id)
);

CREATE TABLE customers (
    domain          text NOT NULL,
    customer_id     text NOT NULL,
    owner_agent_id  text,
    last_agent_id   text,
    record          jsonb NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, customer_id)
);

CREATE TABLE conversations (
    domain              text NOT NULL,
    conversation_id     text NOT NULL,
    channel             text NOT NULL,
    customer_id         text NOT NULL,
    conversation_key    text NOT NULL,
    queue               text NOT NULL,
    status              text NOT NULL,
    owner_agent_id      text,
    preferred_agent_id  text,
    opened_at           timestamptz NOT NULL,
    closed_at           timestamptz,
    record              jsonb NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, conversation_id)
);
-- Recovery loads a domain's open conversations; the API looks up by customer and owner.
CREATE INDEX conversations_open ON conversations (domain) WHERE status <> 'closed';
CREATE INDEX conversations_by_owner ON conversations (domain, owner_agent_id) WHERE status <> 'closed';
CREATE INDEX conversations_by_customer ON conversations (domain, customer_id, opened_at);

CREATE TABLE messages (
    domain               text NOT NULL,
    message_id           text NOT NULL,
    conversation_id      text NOT NULL,
    direction            text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    channel              text NOT NULL,
    provider_message_id  text,
    agent_id             text,
    text                 text NOT NULL DEFAULT '',
    attachments          jsonb NOT NULL DEFAULT '[]',
    status               text,
    occurred_at          timestamptz NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, message_id)
);
CREATE INDEX messages_by_conversation ON messages (domain, conversation_id, occurred_at);
CREATE INDEX messages_by_provider_id ON messages (domain, channel, provider_message_id);

CREATE TABLE assignments (
    domain           text NOT NULL,
    assignment_id    text NOT NULL,
    conversation_id  text NOT NULL,
    agent_id         text NOT NULL,
    strategy         text NOT NULL,
    step             text NOT NULL,
    waited_seconds   double precision NOT NULL,
    candidates       jsonb NOT NULL DEFAULT '[]',
    offered_at       timestamptz,
    accepted_at      timestamptz,
    ended_at         timestamptz,
    end_reason       text,
    record           jsonb NOT NULL,
    PRIMARY KEY (domain, assignment_id)
);
CREATE INDEX assignments_by_conversation ON assignments (domain, conversation_id);
CREATE INDEX assignments_by_agent ON assignments (domain, agent_id, accepted_at);

-- The router's input positions, written in the same transaction as the effects.
CREATE TABLE router_offsets (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Events decided but maybe not yet published; rows are deleted once the broker acked them.
CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY,
    domain      text NOT NULL,
    partition   integer NOT NULL,
    event_id    text NOT NULL,
    topic       text NOT NULL,
    key         bytea,
    value       bytea NOT NULL,
    headers     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain, event_id)
);
CREATE INDEX outbox_by_partition ON outbox (partition, seq);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    reason      text NOT NULL,
    key         bytea,
    value       bytea,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Replies for the customers: created by the API, delivered by the adapters' egress.
CREATE TABLE outbound_messages (
    domain               text NOT NULL,
    outbound_id          text NOT NULL,
    conversation_id      text NOT NULL,
    channel              text NOT NULL,
    agent_id             text NOT NULL,
    status               text NOT NULL,
    provider_message_id  text,
    attempts             integer NOT NULL DEFAULT 0,
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, outbound_id)
);
CREATE INDEX outbound_by_provider_id ON outbound_messages (channel, provider_message_id);
