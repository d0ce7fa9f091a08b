-- API tokens get a lifecycle (expiry, last use, who created and revoked them, rotation)
-- and a third scope, and administrative actions get an audit log.

-- A platform token belongs to no domain (``domain`` NULL): it acts as an admin of every
-- domain and alone manages platform tokens and reads across domains. A primary key cannot
-- hold a NULL, so ``token_id`` alone becomes the key: it names the token in the API, the
-- CLI and the audit log, whatever its domain. The table is read by hash, never scanned by
-- domain, so it stays out of the rule that keys lead with the domain.
DO $$
BEGIN
    IF EXISTS (SELECT token_id FROM api_tokens GROUP BY token_id HAVING count(*) > 1) THEN
        RAISE EXCEPTION 'two api_tokens rows share a token_id: revoke and delete one of '
            'them (DELETE FROM api_tokens WHERE domain = … AND token_id = …), then migrate';
    END IF;
END $$;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_pkey;
ALTER TABLE api_tokens ADD PRIMARY KEY (token_id);
ALTER TABLE api_tokens ALTER COLUMN domain DROP NOT NULL;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scope_check;
ALTER TABLE api_tokens
    ADD CONSTRAINT api_tokens_scope_check CHECK (scope IN ('admin', 'agent', 'platform')),
    ADD CONSTRAINT api_tokens_platform_has_no_domain
        CHECK ((scope = 'platform') = (domain IS NULL));
CREATE INDEX api_tokens_by_domain ON api_tokens (domain, token_id);

-- ``created_by`` and ``revoked_by`` are audit actors (a token id, ``bootstrap``, ``local``
-- or ``cli``); NULL for tokens from before this version. ``last_used_at`` is written at
-- most once a minute per token, off the request's path: it says "in use lately", not
-- "used at this instant". A rotation keeps the replaced hash in ``previous_sha256`` until
-- ``previous_valid_until`` when the caller asked for a grace period, else not at all.
ALTER TABLE api_tokens
    ADD COLUMN expires_at            timestamptz,
    ADD COLUMN last_used_at          timestamptz,
    ADD COLUMN created_by            text,
    ADD COLUMN revoked_by            text,
    ADD COLUMN rotated_at            timestamptz,
    ADD COLUMN previous_sha256       text UNIQUE,
    ADD COLUMN previous_valid_until  timestamptz;

-- One row per administrative action, inserted in the transaction of the action itself.
-- ``domain`` is NULL for platform-wide actions (platform tokens); ``detail`` holds ids,
-- counts and settings, never a secret or a customer's data.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    domain  text,
    target  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);
-- A domain admin pages through that domain's entries by id.
CREATE INDEX audit_log_by_domain ON audit_log (domain, id);
