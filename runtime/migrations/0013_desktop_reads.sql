-- The agent desktop's reads (router.api.desktop): a domain's conversations, most recently
-- active first, paged by keyset (never OFFSET).
--
-- No index holds updated_at: the router rewrites a conversation's row (and its updated_at)
-- whenever its customer writes, and those rewrites stay HOT (0005_write_path.sql) only
-- while no index holds a column they change. One index on updated_at, even a partial one,
-- makes every rewrite add an entry to every index of the table (updates of open
-- conversations two to ten times slower, measured on 300,000 rows). So the lists read in
-- two parts:
-- - open conversations (bounded by the domain's open work) through partial indexes, by
--   status, queue or owner (conversations_by_owner), then sorted by updated_at;
-- - closed ones in the index order of closed_at, which the router sets together with
--   updated_at in the statement that closes the row (router.shell.store) and which does
--   not change afterwards: closing changes the status, a non-HOT update anyway.
-- A customer's conversations come from conversations_by_customer (a customer has few).
CREATE INDEX conversations_open_by_status
    ON conversations (domain, status) WHERE status <> 'closed';
CREATE INDEX conversations_open_by_queue
    ON conversations (domain, queue) WHERE status <> 'closed';
CREATE INDEX conversations_closed_by_time
    ON conversations (domain, closed_at, conversation_id) WHERE status = 'closed';
CREATE INDEX conversations_closed_by_queue
    ON conversations (domain, queue, closed_at, conversation_id) WHERE status = 'closed';
