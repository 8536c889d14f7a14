"""EasyClaw's shared core: queue semantics, schema, settings and job types.

The API, the worker and the operator are thin layers over what is exported here.
"""

from easyclaw.core.errors import (
    DatabaseUnavailableError,
    JobError,
    JobTimeoutError,
    PermanentJobError,
    RetryableJobError,
)
from easyclaw.core.jobtypes import JobContext, JobType, JobTypeRegistry
from easyclaw.core.models import ClaimedJob, Job, JobStatus, Outcome, QueueStats, TransactionType
from easyclaw.core.settings import EngineSettings

__all__ = [
    "ClaimedJob",
    "DatabaseUnavailableError",
    "EngineSettings",
    "Job",
    "JobContext",
    "JobError",
    "JobStatus",
    "JobTimeoutError",
    "JobType",
    "JobTypeRegistry",
    "Outcome",
    "PermanentJobError",
    "QueueStats",
    "RetryableJobError",
    "TransactionType",
]
