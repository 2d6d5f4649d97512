"""Where finished recordings live: a local directory by default, an S3-compatible bucket when
``TONGKE_S3_BUCKET`` is set (MinIO, Ceph, a cloud bucket).

Keys are the paths relative to ``Settings.media_root`` (``recordings/12/lesson.mp4``), so a
recording's files have the same names in either place. The recorder and the processing job
always work on local files; the job uploads what it made (and the raw capture) when it is
done, streamed from disk in parts, and may then drop the local copies. Media always reaches
viewers through the app, after its permission check: byte ranges are read from the bucket and
passed on, so the bucket itself stays private (schools' networks often reach only the app).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from common.errors import StorageUnavailableError
from common.logging import get_logger
from common.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

log = get_logger(__name__)

CHUNK_BYTES = 256 * 1024
# Files above this go up as a multipart upload, in parts of this size, two at a time: memory
# per upload stays at a few parts whatever the file's length.
MULTIPART_BYTES = 16 * 1024 * 1024
UPLOAD_CONCURRENCY = 2


class StorageError(StorageUnavailableError):
    """The storage refused or failed an operation: a 503 with a Chinese message for the user
    (the live lesson and the database are never touched by it)."""


def _checked_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"bad storage key: {key!r}")
    return str(path)


class MediaStorage(Protocol):
    """What the library needs of a place that keeps files."""

    kind: str

    def upload(self, key: str, source: Path, *, content_type: str) -> None:
        """Store ``source`` under ``key`` (replacing it), streamed from disk."""
        ...

    def download(self, key: str, target: Path) -> None:
        """Write the object to ``target`` (atomically), streamed to disk."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None when there is none."""
        ...

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start``..``end`` (inclusive) of the object, in chunks."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; returns how many."""
        ...

    def ensure_bucket(self) -> None:
        """Make sure the place exists (a no-op on local disk)."""
        ...


@dataclass(frozen=True)
class LocalStorage:
    """Files under ``root`` (``Settings.media_root``): the recorder's own directory."""

    root: Path
    kind: str = "local"

    def path(self, key: str) -> Path:
        return self.root / _checked_key(key)

    def upload(self, key: str, source: Path, *, content_type: str) -> None:
        target = self.path(key)
        if target.exists() and target.resolve() == source.resolve():
            return  # processing writes in place
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)

    def download(self, key: str, target: Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise StorageError(f"文件不存在：{key}")
        if target.exists() and target.resolve() == source.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, target)

    def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        with self.path(key).open("rb") as file:
            file.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = file.read(min(CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        directory = self.path(prefix.rstrip("/"))
        if not directory.exists():
            return 0
        if directory.is_file():
            directory.unlink()
            return 1
        count = sum(1 for p in directory.rglob("*") if p.is_file())
        shutil.rmtree(directory)
        return count


class S3Storage:
    """Objects in one bucket of an S3-compatible server, under ``prefix``."""

    kind = "s3"

    def __init__(self, client: S3Client, *, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def ensure_bucket(self) -> None:
        """Create the bucket when the server has none of that name (a fresh MinIO)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise StorageError(f"对象存储不可用：{self.bucket}") from exc
            self.client.create_bucket(Bucket=self.bucket)
            log.info("s3_bucket_created", bucket=self.bucket)

    def object_key(self, key: str) -> str:
        return self.prefix + _checked_key(key)

    def upload(self, key: str, source: Path, *, content_type: str) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_BYTES,
            multipart_chunksize=MULTIPART_BYTES,
            max_concurrency=UPLOAD_CONCURRENCY,
        )
        try:
            self.client.upload_file(
                str(source),
                self.bucket,
                self.object_key(key),
                ExtraArgs={"ContentType": content_type},
                Config=config,
            )
        except Exception as exc:
            log.warning("s3_upload_failed", key=key, bucket=self.bucket, error=str(exc))
            raise StorageError(f"上传到对象存储失败：{key}") from exc

    def download(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        try:
            self.client.download_file(self.bucket, self.object_key(key), str(partial))
            os.replace(partial, target)
        except Exception as exc:
            log.warning("s3_download_failed", key=key, bucket=self.bucket, error=str(exc))
            raise StorageError(f"从对象存储下载失败：{key}") from exc
        finally:
            partial.unlink(missing_ok=True)

    def size(self, key: str) -> int | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"对象存储不可用：{key}") from exc
        except BotoCoreError as exc:  # unreachable endpoint, timeout, bad credentials setup
            log.warning("s3_unreachable", key=key, bucket=self.bucket, error=str(exc))
            raise StorageError("录像存储暂时无法访问，请稍后再试") from exc
        return int(head["ContentLength"])

    def read_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self.object_key(key), Range=f"bytes={start}-{end}"
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning("s3_read_failed", key=key, bucket=self.bucket, error=str(exc))
            raise StorageError("录像存储暂时无法访问，请稍后再试") from exc
        body = response["Body"]
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        finally:
            body.close()

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        # the trailing slash matters: "recordings/1/" must not take "recordings/12/" along
        wanted = self.object_key(prefix) + ("/" if prefix.endswith("/") else "")
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=wanted):
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]} for item in page.get("Contents", []) if "Key" in item
            ]
            if keys:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                deleted += len(keys)
        return deleted


@lru_cache(maxsize=8)
def _s3_client(
    endpoint_url: str | None, region: str, access_key: str | None, secret_key: str | None
) -> S3Client:
    import boto3
    from botocore.config import Config

    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        # MinIO and most self-hosted servers want path-style addressing.
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )
    return client


def remote_storage(settings: Settings) -> S3Storage | None:
    """The configured bucket, or None when recordings stay on local disk."""
    if not settings.s3_bucket:
        return None
    # compose passes unset values as empty strings
    client = _s3_client(
        settings.s3_endpoint_url or None,
        settings.s3_region or "us-east-1",
        settings.s3_access_key_id or None,
        settings.s3_secret_access_key or None,
    )
    return S3Storage(client, bucket=settings.s3_bucket, prefix=settings.s3_prefix)


def local_storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.media_root)
