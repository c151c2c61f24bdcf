"""The blob-key layout, in one place. A key starts with its kind's prefix (`retention.policy.KINDS`), which
carries the kind's retention rule (and the S3 backstop); then the owner, so an erasure can find every key.

    photos/{owner}/{pet}/{photo}.{ext}
    models/{owner}/{job}/a{attempt}/{model}.safetensors
    renders/{owner}/{job}/a{attempt}/{render}.png
    marketing/{owner}/{copy}.{ext}

Outputs of jobs sit under `attempt_prefix(...)`, so a retry never doubles them and a dead attempt's partial
outputs can be found and removed.
"""

from __future__ import annotations

from petportrait.retention.policy import KINDS


def photo_key(*, owner_id: str, pet_id: str, photo_id: str, extension: str) -> str:
    """The blob key of a photo."""
    return f"{KINDS['photo'].prefix}{owner_id}/{pet_id}/{photo_id}.{extension}"


def attempt_prefix(kind: str, *, owner_id: str, job_id: str, attempt: int) -> str:
    """The prefix under which one attempt of a job writes the items of `kind` (model or render)."""
    return f"{KINDS[kind].prefix}{owner_id}/{job_id}/a{attempt}/"


def model_key(*, owner_id: str, job_id: str, attempt: int, model_id: str) -> str:
    """The blob key of a model's LoRA weights, written by one attempt of its training job."""
    return (
        f"{attempt_prefix('model', owner_id=owner_id, job_id=job_id, attempt=attempt)}{model_id}.safetensors"
    )


def render_key(*, owner_id: str, job_id: str, attempt: int, render_id: str) -> str:
    """The blob key of a rendered portrait, written by one attempt of its render job."""
    return f"{attempt_prefix('render', owner_id=owner_id, job_id=job_id, attempt=attempt)}{render_id}.png"


def marketing_key(*, owner_id: str, copy_id: str, extension: str) -> str:
    """The blob key of a copy in the marketing library."""
    return f"{KINDS['marketing'].prefix}{owner_id}/{copy_id}.{extension}"
