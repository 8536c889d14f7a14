"""The built-in job types, registered through the ``easyclaw.job_types`` entry points."""
