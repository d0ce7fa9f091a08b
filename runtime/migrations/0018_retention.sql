-- Retention (runtime.retention): the indexes its expiry statements read, and how far each
-- domain's emptying of message bodies got.
--
-- Conversations closed long ago come from conversations_closed_by_time, their messages,
-- assignments and replies from the by-conversation indexes, the replay log from
-- agent_events_by_time. What had no index of its own:
-- - dead letters and consent changes by domain and age (small tables, seldom written);
-- - business-started messages by domain and age: those nobody answered have no
--   conversation to be found through. One entry more per notification; the second index
--   holds only those whose stored request is not emptied yet (they leave it when it is),
--   so that emptying reads what is left to empty, not everything it emptied before.
CREATE INDEX dead_letters_by_time ON dead_letters (domain, created_at);
CREATE INDEX consent_changes_by_time ON consent_changes (domain, changed_at);
CREATE INDEX outbound_notifications_by_time ON outbound_messages (domain, created_at) WHERE kind = 'notification';
CREATE INDEX outbound_notification_requests ON outbound_messages (domain, created_at) WHERE kind = 'notification' AND request IS NOT NULL;

-- message_bodies empties conversations in the order they closed. The mark is the last one
-- it finished (closed_at, conversation_id), so that a pass reads only the conversations
-- closed since, never the ones it emptied before. closed_at is set once, when the router
-- closes a conversation, at the time of that batch: nothing closes behind the mark.
CREATE TABLE retention_marks (
    domain           text NOT NULL,
    kind             text NOT NULL CHECK (char_length(kind) <= 32),
    closed_at        timestamptz NOT NULL,
    conversation_id  text NOT NULL,
    PRIMARY KEY (domain, kind)
);
