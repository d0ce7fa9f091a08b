-- A consent covers every business-started message (consents: a STOP keyword, an
-- unsubscribe link) or marketing templates alone (marketing_consents: WhatsApp's "Offers
-- and announcements" setting). One current consent per address in each table; a send is
-- refused when the latest change of any scope it falls under is an opt-out
-- (runtime.outbound.OPTED_OUT). A table of its own, not a column of consents' key: a
-- version before this one keeps writing consents as it did while the routers roll.
CREATE TABLE marketing_consents (
    domain       text NOT NULL,
    channel      text NOT NULL,
    address      text NOT NULL,
    customer_id  text NOT NULL,
    consent      text NOT NULL CHECK (consent IN ('opt_in', 'opt_out')),
    source       text NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (domain, channel, address)
);
CREATE INDEX marketing_consents_by_customer ON marketing_consents (domain, customer_id);
CREATE INDEX marketing_consents_by_address ON marketing_consents (domain, address);
-- Every current consent with its scope, for the readers (a plain view: a query that names
-- it reads both tables by their indexes).
CREATE VIEW scoped_consents AS
    SELECT 'all' AS scope, domain, channel, address, customer_id, consent, source, changed_at
    FROM consents
    UNION ALL
    SELECT 'marketing', domain, channel, address, customer_id, consent, source, changed_at
    FROM marketing_consents;
ALTER TABLE consent_changes ADD COLUMN scope text NOT NULL DEFAULT 'all';
