-- The runtime configuration (domains and channel endpoints), one row per version. A
-- version is never changed: a rollback is a new version holding an older document.
-- ``document`` is ``json``, not ``jsonb``, so that the text (and the order of its keys)
-- every process decodes is the one that was written.

CREATE TABLE config_versions (
    version      bigint PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    author       text NOT NULL,
    reason       text NOT NULL,
    document     json NOT NULL,
    diff         jsonb NOT NULL,
    domains      text[] NOT NULL
);

CREATE INDEX config_versions_domains ON config_versions USING gin (domains);

-- Where a version came from outside the API: the configuration file's document hash,
-- so that a restart with an unchanged file keeps what the API changed since.
CREATE TABLE config_sources (
    source       text PRIMARY KEY,
    sha256       text NOT NULL,
    version      bigint NOT NULL REFERENCES config_versions (version)
);
