"""The engine's one root error."""


class EngineError(Exception):
    """Our bug: the engine found its own state impossible. The partition task stops."""
