"""Blob storage: the BlobStore protocol and the backend a setting chooses (local folder or S3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from petportrait.storage.base import (
    BlobError,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    InvalidKey,
    validate_key,
    validate_prefix,
)
from petportrait.storage.local import KeyConflict, LocalBlobStore

if TYPE_CHECKING:
    from petportrait.settings import Settings

__all__ = [
    "BlobError",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "InvalidKey",
    "KeyConflict",
    "LocalBlobStore",
    "create_blob_store",
    "validate_key",
    "validate_prefix",
]


def create_blob_store(settings: Settings) -> BlobStore:
    """The blob store that settings.storage.backend names: a folder at settings.blob_root, or S3."""
    backend = settings.storage.backend
    if backend == "local":
        return LocalBlobStore(settings.blob_root)
    if backend == "s3":
        from petportrait.storage.s3 import S3BlobStore  # boto3 is imported only when S3 is used

        storage = settings.storage
        return S3BlobStore(
            storage.s3_bucket,
            endpoint_url=storage.s3_endpoint_url,
            region=storage.s3_region,
            prefix=storage.s3_prefix,
            access_key_id=storage.s3_access_key_id,
            secret_access_key=storage.s3_secret_access_key,
        )
    raise ValueError(f"unknown storage backend {backend!r}; expected 'local' or 's3'")
