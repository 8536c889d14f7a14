"""Example EasyClaw plug-in: the HELLO job type (see ``jobs.py``)."""
