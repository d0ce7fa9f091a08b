"""The agent and operations HTTP API (``/v1/domains/{domain}/...``): ``setup.setup_api``
installs it on an application."""
