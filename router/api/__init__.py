"""The agent and operations HTTP API (``/v1/domains/{domain}/...``).

The package import stays light: ``switchboard.config`` imports ``router.api.config``,
while the API's modules import the configuration, so ``setup_api`` loads them on call.
"""

from __future__ import annotations

from aiohttp import web


def setup_api(app: web.Application) -> None:
    """Add the API's routes and resources to ``app`` (see ``router.api.setup``)."""
    from router.api.setup import setup_api as setup

    setup(app)


__all__ = ["setup_api"]
