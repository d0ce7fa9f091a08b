-- A customer message to a conversation its owner holds, online, changes only the
-- conversation's activity (router.engine.ConversationActivity: when the customer last
-- wrote, the message count, the reply window, the next deadline). The router writes that
-- alone, in a narrow row of its own updated in place, and leaves the conversation's row
-- as it was. The conversation's current record is its record, or the activity over it
-- when the activity is the later of the two: the one with the higher message count (each
-- customer message counts one more; at equal counts the record was saved since). Readers
-- go through switchboard_conversation_record; the router, which restores thousands at a
-- takeover, merges the two itself (router.engine.with_activity). Closing a conversation
-- deletes its activity row, and so does deleting the conversation (erasure, retention).
-- A conversation was last active at the later of the two rows' updated_at (the agent
-- desktop's order).
CREATE TABLE conversation_activity (
    domain text NOT NULL,
    conversation_id text NOT NULL,
    activity json NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, conversation_id),
    FOREIGN KEY (domain, conversation_id) REFERENCES conversations (domain, conversation_id)
        ON DELETE CASCADE
) WITH (fillfactor = 70);

CREATE FUNCTION switchboard_conversation_record(c conversations) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN coalesce((a.activity->>'message_count')::bigint, 0)
             > coalesce((c.record->>'message_count')::bigint, 0)
        THEN (c.record::jsonb || a.activity::jsonb)::json
        ELSE c.record END
    FROM (SELECT 1) AS one
    LEFT JOIN conversation_activity a
        ON a.domain = c.domain AND a.conversation_id = c.conversation_id
$$;
