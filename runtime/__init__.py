"""What every part of the service shares: configuration sections, the broker and database
clients, migrations, logging, metrics, HTTP errors, readiness and dead letters.

It imports only ``schemas``: the router and the adapters build on it, never the other way.
"""
