-- Readers of the topics read the spare keys stocked since they last asked, before any
-- record sealed with them arrives (runtime.sealing.KEYS_FOR_OPENING): only the spares
-- not named yet, found without going through the keys named since.
CREATE INDEX topic_keys_unnamed_spares ON topic_keys (created_at) WHERE spare AND subject IS NULL;
