"""Failure drills: kill workers, restart the database, stop workers mid-job.

Each drill is an async function that runs real ``easyclaw`` processes against
a real PostgreSQL, prints what it counted and returns a report whose
``problems`` list is empty when every promise held. ``make drills`` runs the
long versions (``python -m bench.drills``); ``tests/e2e/test_drills.py`` runs
the quick ones in ``make test``.
"""
