"""Every table of every domain, imported in one place so that metadata is complete."""

from __future__ import annotations

from petportrait import idempotency as idempotency_models
from petportrait.accounts import models as accounts_models
from petportrait.consent import models as consent_models
from petportrait.db import Base
from petportrait.integrations import models as webhooks_models
from petportrait.jobs import models as jobs_models
from petportrait.notifications import models as notifications_models
from petportrait.pets import models as pets_models
from petportrait.portraits import models as portraits_models
from petportrait.retention import models as retention_models
from petportrait.retention import transparency_models
from petportrait.rights import models as rights_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "consent_models",
    "idempotency_models",
    "jobs_models",
    "metadata",
    "notifications_models",
    "pets_models",
    "portraits_models",
    "retention_models",
    "rights_models",
    "transparency_models",
    "webhooks_models",
]
