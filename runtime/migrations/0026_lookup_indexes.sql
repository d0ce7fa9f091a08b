-- The router's read before a batch applies looks messages and identities up by their
-- primary keys, (domain, message_id) and (domain, identity), one row at a time
-- (router.shell.reads). Its plan is made once per connection and kept; a plan made while
-- the tables were small may take any index that starts with domain as good enough, and
-- then walk every row of the domain at each lookup. These two indexes lead with the
-- column their queries always name besides domain, so that only the primary key starts
-- with domain. Built without CONCURRENTLY (migrations run in a transaction): on a large
-- messages table the upgrade holds writes for the time of the build.
CREATE INDEX messages_of_conversation ON messages (conversation_id, domain, occurred_at);
DROP INDEX messages_by_conversation;
CREATE INDEX customer_identities_of_customer ON customer_identities (customer_id, domain);
DROP INDEX customer_identities_by_customer;
