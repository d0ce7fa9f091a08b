"""Tools around the service, never imported by it: the ``switchboard`` command line (the
service's commands plus the operator's), the simulator, replay, tokens, dead letters, and
the benchmarks."""
