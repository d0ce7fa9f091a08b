"""Workforce planning over the routing engine: what the measured workload says about the
coming days, and how many agents it takes.

Pure and deterministic like the engine: no I/O, no clock reads, randomness only from a
seed the caller passes.

- ``forecast``: the seasonal model of arrivals per interval, and its error on held-out weeks;
- ``demand``: a staffing demand from measured workload, recorded or forecast;
- ``staffing``: the real engine in simulated time over a demand and a roster;
- ``search``: the fewest agents per interval meeting a service target;
- ``erlang`` and ``compare``: the textbook queueing formulas, beside the simulation;
- ``eta``: how long a waiting conversation will wait (the router's live estimates).
"""
