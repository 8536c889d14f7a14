"""The metrics mirror process: the queue's numbers, published to CloudWatch.

A deployable of its own (``easyclaw metrics-mirror``), beside the worker and
built on the same engine; see ``mirror.py``.
"""
