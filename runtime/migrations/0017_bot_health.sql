-- Bots that failed since they last answered (router.engine.bots, rule 6): failures in a
-- row and, once down, until when new conversations skip them. A bot that answers has no
-- row. Loaded with the domain at takeover, so a restored router decides the same.
CREATE TABLE bot_health (
    domain  text NOT NULL,
    bot_id  text NOT NULL,
    record  json NOT NULL,
    PRIMARY KEY (domain, bot_id)
);
