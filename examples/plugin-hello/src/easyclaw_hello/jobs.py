"""HELLO: greets someone, and counts the greetings in its result.

It shows the three parts of a job type: a payload model (checked by the API
before the job is queued, and again by the worker), an async handler whose
return value becomes the job's result, and the JobType that names them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from easyclaw.core import JobContext, JobType, PermanentJobError


class HelloPayload(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    times: int = Field(1, ge=1, le=10)


async def say_hello(ctx: JobContext) -> dict[str, Any]:
    payload = HelloPayload.model_validate(ctx.payload)
    if payload.name.lower() == "nobody":
        # A failure retrying cannot fix: the job ends FAILED with this message.
        raise PermanentJobError("cannot greet nobody")
    greeting = " ".join([f"Hello, {payload.name}!"] * payload.times)
    return {"greeting": greeting, "attempt": ctx.job.attempt}


HELLO = JobType(
    name="HELLO",
    handler=say_hello,
    payload_model=HelloPayload,
    description="Greets someone (an example plug-in).",
    timeout_seconds=10,
)
