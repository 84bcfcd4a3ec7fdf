"""Where backups go, chosen by URL: a directory (another disk) or an S3-compatible bucket.

``file:///mnt/backup`` or a plain path is a :class:`DirectoryTarget`; ``s3://bucket/prefix``
is an :class:`S3Target` (the endpoint and credentials come from the ``backup.s3_*``
settings, never from the URL, so the URL can be shown and recorded as it is). A backup is a
folder ``<backup id>/`` with ``files/...`` and ``manifest.json``, written last: a backup
without its manifest is incomplete and is never listed as one.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import unquote, urlparse

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error

from haltguard.backup.errors import (
    BackupSettingsError,
    DamagedBackupError,
    TargetUnreachableError,
)
from haltguard.backup.settings import S3Credentials

if TYPE_CHECKING:
    from typing_extensions import Buffer

MANIFEST_NAME = "manifest.json"
PACED_SYNC_BYTES = 8 << 20
"""A file written to a directory target is synced every this many bytes: the disk takes the
backup in steady steps instead of one flood of dirty pages at the end, which would stall the
journal's own fsyncs on a shared disk."""
S3_TIMEOUT_S = 10.0
S3_PART_BYTES = 64 << 20


class Target(Protocol):
    """What the backup flows need of a place backups are kept."""

    url: str
    """The target as recorded and shown: no credentials in it."""

    def check(self) -> None:
        """Raise :class:`TargetUnreachableError` unless the target can be written now."""

    def backup_ids(self) -> list[str]:
        """Every backup folder at the target (complete or not), oldest first."""

    def exists(self, name: str) -> bool: ...

    def writer(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A file to write ``name`` into; it appears under its name only if the block ends
        without an exception."""

    def reader(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """``name`` opened for reading; :class:`DamagedBackupError` if it is missing."""

    def delete_backup(self, backup_id: str) -> None: ...

    def direct_path(self, name: str) -> contextlib.AbstractContextManager[Path] | None:
        """A local path to create ``name`` at directly (placed under its name if the block
        ends without an exception), or None where the target is not a local disk."""


def open_target(url: str, s3: S3Credentials | None = None) -> Target:
    """The target a URL names, or :class:`BackupSettingsError` saying what is accepted."""
    if not url:
        raise BackupSettingsError(
            "no backup target: set backup.target_url (or pass --target), e.g. "
            "file:///mnt/backup or s3://bucket/haltguard")
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme == "file" else url
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise BackupSettingsError(f"{url}: a file URL names a local path (file:///path)")
        return DirectoryTarget(Path(path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise BackupSettingsError(f"{url}: an S3 URL names its bucket (s3://bucket/prefix)")
        return S3Target(parsed.netloc, parsed.path.strip("/"), s3 or S3Credentials())
    raise BackupSettingsError(
        f"{url}: unknown backup target; use file:///path, a plain path or s3://bucket/prefix")


def _unreachable(url: str, problem: str) -> TargetUnreachableError:
    return TargetUnreachableError(
        f"the backup target {url} cannot be used: {problem}",
        message_ja=f"バックアップ先 {url} を使用できません: {problem}",
        next_step="check that the disk is mounted (or the S3 endpoint, bucket and "
        "credentials in backup.s3_*), then try again; nothing was written",
        next_step_ja="ディスクのマウント(または S3 のエンドポイント・バケット・認証情報)を確認し、"
        "再実行してください。何も書き込まれていません",
    )


def _missing(url: str, name: str) -> DamagedBackupError:
    return DamagedBackupError(
        f"{name}: missing from the backup at {url}",
        message_ja=f"{name}: バックアップ {url} にありません",
        next_step="restore from an older backup (`haltguard backup list`)",
        next_step_ja="古いバックアップから復元してください(`haltguard backup list`)",
    )


class DirectoryTarget:
    """Backups in a directory; each file written to ``.part`` and renamed when complete."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.url = self.root.as_uri()

    def check(self) -> None:
        if not self.root.parent.is_dir():
            raise _unreachable(self.url, f"{self.root.parent} does not exist (disk not mounted?)")
        try:
            self.root.mkdir(mode=0o700, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise _unreachable(self.url, exc.strerror or str(exc)) from exc

    def backup_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(path.name for path in self.root.iterdir()
                      if path.is_dir() and not path.name.startswith("."))

    def _path(self, name: str) -> Path:
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"not a name inside the target: {name!r}")
        return self.root.joinpath(*relative.parts)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        try:
            with io.BufferedWriter(_PacedFile(partial, "w"), buffer_size=1 << 20) as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def direct_path(self, name: str) -> contextlib.AbstractContextManager[Path]:
        return self._direct_path(name)

    @contextlib.contextmanager
    def _direct_path(self, name: str) -> Iterator[Path]:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        try:
            yield partial
            with partial.open("rb+") as file:
                os.fsync(file.fileno())
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def reader(self, name: str) -> Iterator[BinaryIO]:
        try:
            file = self._path(name).open("rb")
        except FileNotFoundError:
            raise _missing(self.url, name) from None
        with file:
            yield file

    def delete_backup(self, backup_id: str) -> None:
        shutil.rmtree(self._path(backup_id), ignore_errors=True)


class _PacedFile(io.FileIO):
    """A raw file that syncs its data every :data:`PACED_SYNC_BYTES` written."""

    _unsynced = 0

    def write(self, data: Buffer) -> int:
        written = super().write(data)
        self._unsynced += written
        if self._unsynced >= PACED_SYNC_BYTES:
            os.fdatasync(self.fileno())
            self._unsynced = 0
        return written


class S3Target:
    """Backups in an S3-compatible bucket under a prefix (MinIO's client, any S3 server)."""

    def __init__(self, bucket: str, prefix: str, credentials: S3Credentials) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.url = f"s3://{bucket}/{prefix}".rstrip("/")
        endpoint = credentials.endpoint or "s3.amazonaws.com"
        secure = credentials.secure
        if "://" in endpoint:
            parsed = urlparse(endpoint)
            endpoint, secure = parsed.netloc, parsed.scheme == "https"
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=S3_TIMEOUT_S, read=S3_TIMEOUT_S * 6),
            retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]),
        )
        self.client = Minio(
            endpoint, access_key=credentials.access_key or None,
            secret_key=credentials.secret_key or None, region=credentials.region or None,
            secure=secure, http_client=http,
        )

    def _key(self, name: str) -> str:
        return self.prefix + name

    def check(self) -> None:
        try:
            found = self.client.bucket_exists(self.bucket)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise _unreachable(self.url, str(exc).splitlines()[0][:300]) from exc
        if not found:
            raise _unreachable(self.url, f"the bucket {self.bucket} does not exist")

    def backup_ids(self) -> list[str]:
        try:
            objects = self.client.list_objects(self.bucket, prefix=self.prefix)
            names = [obj.object_name for obj in objects if obj.is_dir and obj.object_name]
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _unreachable(self.url, str(exc).splitlines()[0][:300]) from exc
        return sorted(name[len(self.prefix):].strip("/") for name in names)

    def exists(self, name: str) -> bool:
        try:
            self.client.stat_object(self.bucket, self._key(name))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise _unreachable(self.url, str(exc)) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _unreachable(self.url, str(exc).splitlines()[0][:300]) from exc
        return True

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[BinaryIO]:
        with tempfile.TemporaryFile() as spool:
            yield spool
            size = spool.tell()
            spool.seek(0)
            try:
                self.client.put_object(self.bucket, self._key(name), spool, size,
                                       part_size=S3_PART_BYTES)
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise _unreachable(self.url, str(exc).splitlines()[0][:300]) from exc

    @contextlib.contextmanager
    def reader(self, name: str) -> Iterator[BinaryIO]:
        with tempfile.TemporaryFile() as spool:
            try:
                response = self.client.get_object(self.bucket, self._key(name))
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                    raise _missing(self.url, name) from None
                raise _unreachable(self.url, str(exc)) from exc
            except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise _unreachable(self.url, str(exc).splitlines()[0][:300]) from exc
            try:
                for chunk in response.stream(1 << 20):
                    spool.write(chunk)
            finally:
                response.close()
                response.release_conn()
            spool.seek(0)
            yield spool

    def direct_path(self, name: str) -> None:
        return None

    def delete_backup(self, backup_id: str) -> None:
        objects = self.client.list_objects(self.bucket, prefix=self._key(backup_id + "/"),
                                           recursive=True)
        deletes = [DeleteObject(obj.object_name) for obj in objects if obj.object_name]
        for error in self.client.remove_objects(self.bucket, deletes):
            raise _unreachable(self.url, f"deleting {error.name}: {error.message}")
