"""Helpers of ``scripts/bench.py``, the benchmark of the Redis engine.

``pool``, ``proxy``, ``resp`` and ``workload`` use only the standard
library, because they also run in the separate interpreter that has
python-slimta, which ``anchor`` needs. ``hosts`` and ``stats`` use only
the standard library too. The other modules need slimta-storage and
redis-py.
"""
