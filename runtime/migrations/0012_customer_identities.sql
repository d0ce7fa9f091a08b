-- A customer profile can be reached from several identities (phone, email, web chat
-- user, Messenger PSID …). A profile's id is the identity it started from; this table
-- holds every other identity linked to it, and the ids of profiles merged into it, so
-- an identity's profile is ``coalesce((SELECT customer_id …), identity)``. The router is
-- its one writer (from the engine's link, unlink and merge effects); the API reads it to
-- show a person's profile and cross-channel history.
CREATE TABLE customer_identities (
    domain       text NOT NULL,
    identity     text NOT NULL,
    customer_id  text NOT NULL,
    source       text NOT NULL,
    linked_at    timestamptz NOT NULL,
    PRIMARY KEY (domain, identity)
);
CREATE INDEX customer_identities_by_customer ON customer_identities (domain, customer_id);
