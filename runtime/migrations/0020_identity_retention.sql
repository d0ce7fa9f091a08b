-- Retention of customer identities (runtime.retention, customer_identities): a customer
-- gone quiet for the period is erased as the API erases one, but their consents stay, so
-- that an opt-out is still honoured. The job walks a domain's customers in id order a page
-- at a time, from where its last pass stopped (retention_scans.after: a customer id, so an
-- erasure of that customer deletes the row and the walk starts over).
ALTER TABLE erasures ADD COLUMN keep_consents boolean NOT NULL DEFAULT false;

CREATE TABLE retention_scans (
    domain  text NOT NULL,
    kind    text NOT NULL CHECK (char_length(kind) <= 32),
    after   text NOT NULL,
    PRIMARY KEY (domain, kind)
);

-- Completed erasures are purged after a while (their audit entries stay): by age.
CREATE INDEX erasures_by_age ON erasures (requested_at);
