"""Reproducible performance runs for django-convstore (not packaged).

Run everything with ``python -m benchmarks`` (or ``make bench``); each module
can also run alone, e.g. ``python -m benchmarks.lru_bench``.
"""
