-- A consent covers every business-started message ('all': a STOP keyword, an unsubscribe
-- link) or marketing templates alone ('marketing': WhatsApp's "Offers and announcements"
-- setting). One current consent per address and scope; a send is refused when the latest
-- change of any scope it falls under is an opt-out (runtime.outbound.OPTED_OUT).
ALTER TABLE consents ADD COLUMN scope text NOT NULL DEFAULT 'all'
    CHECK (scope IN ('all', 'marketing'));
ALTER TABLE consents DROP CONSTRAINT consents_pkey;
ALTER TABLE consents ADD PRIMARY KEY (domain, channel, address, scope);
ALTER TABLE consent_changes ADD COLUMN scope text NOT NULL DEFAULT 'all';
