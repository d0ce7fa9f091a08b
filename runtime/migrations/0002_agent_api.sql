-- The agent API: bearer tokens, and indexes for its live figures.

-- Tokens are stored as the SHA-256 of a 256-bit random secret: a leaked table gives no
-- usable token. ``scope`` 'admin' acts on the whole domain, 'agent' as ``agent_id`` only.
CREATE TABLE api_tokens (
    domain        text NOT NULL,
    token_id      text NOT NULL,
    token_sha256  text NOT NULL UNIQUE,
    scope         text NOT NULL CHECK (scope IN ('admin', 'agent')),
    agent_id      text,
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    PRIMARY KEY (domain, token_id),
    CHECK ((scope = 'agent') = (agent_id IS NOT NULL))
);

-- Agent figures of the day: offers and assignments by agent and time.
CREATE INDEX assignments_by_agent_offered ON assignments (domain, agent_id, offered_at);
-- Queue figures: recent assignments of a domain (waits and throughput of the last hour).
CREATE INDEX assignments_by_offered ON assignments (domain, offered_at);
-- Preferred-agent hit ratio: conversations by their preferred agent.
CREATE INDEX conversations_by_preferred ON conversations (domain, preferred_agent_id, opened_at);
-- First responses: an agent's replies of the day, and a conversation's replies in order.
CREATE INDEX outbound_by_agent ON outbound_messages (domain, agent_id, created_at);
CREATE INDEX outbound_by_conversation ON outbound_messages (domain, conversation_id, created_at);
