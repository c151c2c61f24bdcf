"""Fixtures of the outage tests: moto's S3 server (the storage suite's), loopback proxies."""

from __future__ import annotations

from tests.storage.conftest import _no_ambient_aws, moto_endpoint

__all__ = ["_no_ambient_aws", "moto_endpoint"]
