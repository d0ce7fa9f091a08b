"""Reference bots: a small rule-based bot (``tools.bots.logic``) behind both ways a bot
takes part in routing, ``bot.turn`` read from the routing topic and answers published on
``bots.events`` (``tools.bots.kafka_bot``), and the signed HTTP webhook that
``switchboard adapters`` calls (``tools.bots.http_bot``). Examples to start from and the
bots of the end-to-end tests; the service never imports them."""
