-- One-time tokens of signed webhook requests (Mailgun's ``token``), claimed before a
-- request is published so that a captured signature cannot be replayed with another body,
-- by any adapter process, before or after a restart. A row is kept until its signature
-- stops being fresh (``expires_at``): after that the timestamp check refuses the replay,
-- and the row is purged. The lengths keep the primary key within a btree entry
-- (``schemas.limits.NONCE_MAX``; the adapter refuses a longer token with 400 first).
CREATE TABLE webhook_nonces (
    provider    text        NOT NULL CHECK (char_length(provider) <= 64),
    nonce       text        NOT NULL CHECK (char_length(nonce) <= 256),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (provider, nonce)
);
CREATE INDEX webhook_nonces_by_expiry ON webhook_nonces (provider, expires_at);
