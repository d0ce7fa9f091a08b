-- Bots write replies too: an outbound message is an agent's (agent_id) or a bot's (bot_id).
ALTER TABLE outbound_messages ADD COLUMN bot_id text;
ALTER TABLE messages ADD COLUMN bot_id text;
