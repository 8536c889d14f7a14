"""The systems bench/compare.py runs side by side, one module each.

Each peer module has a ``Peer`` subclass (driven by the benchmark process) and
the worker-side code its workers import (a job type, a task, an entrypoint).
"""
