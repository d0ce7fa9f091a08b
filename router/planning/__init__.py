"""Workforce planning over the routing engine: what the measured workload says about the
coming days, and how many agents it takes.

Pure and deterministic like the engine: no I/O, no clock reads, randomness only from a
seed the caller passes. ``erlang`` holds the textbook queueing formulas, ``forecast`` the
seasonal model of arrivals and workload, ``staffing`` runs the real engine in simulated
time over a demand and a roster.
"""
