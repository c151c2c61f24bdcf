"""Every table of every domain, imported in one place so that metadata is complete."""

from __future__ import annotations

from petportrait.accounts import models as accounts_models
from petportrait.db import Base
from petportrait.pets import models as pets_models

metadata = Base.metadata

__all__ = ["accounts_models", "metadata", "pets_models"]
