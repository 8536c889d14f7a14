"""The worker: claims jobs from PostgreSQL and runs their handlers."""

from easyclaw.worker.runner import Worker

__all__ = ["Worker"]
