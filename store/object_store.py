"""Where the audit snapshots go: one small object-store interface (put bytes if changed, get,
list) over a local directory (the default) or an S3-compatible bucket (`EPM_OBJECT_STORE_URL=
s3://BUCKET/PREFIX`, optional `EPM_OBJECT_STORE_ENDPOINT` for MinIO / Ceph / moto).

Keys are relative, `/`-separated paths (`2026/03/02/intent/sig-1.json`); both stores hold the
same keys, so a bucket is a drop-in for the directory. "Put if changed" is what keeps reruns
harmless: the directory compares bytes and writes atomically (temporary file, fsync, rename); the
bucket compares a sha256 kept in the object's metadata (or, for an object written by another
tool, its ETag, which is the body's md5 for a single PUT) before it PUTs, so an unchanged object
is never rewritten and keeps its version and time.

boto3 is an optional extra (`pip install 'epm[s3]'`) imported only when a bucket is named, so
the embedded default never needs it; a bucket URL without it is one clear `ObjectStoreConfigError`
line at start-up.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = [
    "LocalObjectStore",
    "ObjectStore",
    "ObjectStoreConfigError",
    "S3ObjectStore",
    "check_object_store",
    "mirror_folder",
    "open_object_store",
]

SHA256_META = "sha256"


class ObjectStoreConfigError(ValueError):
    """EPM_OBJECT_STORE_URL / _ENDPOINT cannot be used; the message names the setting."""


class ObjectStore(Protocol):
    def put_if_changed(self, key: str, data: bytes) -> bool:
        """Store `data` under `key`; False (and nothing written) when it already holds it."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, None when there is none."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix`, sorted."""
        ...

    def location(self, key: str) -> str:
        """Where `key` is, for an operator: a file path or an s3:// URL."""
        ...


def _checked(key: str) -> PurePosixPath:
    """A key is a relative path with no `..` and no empty parts: it cannot leave the root."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("", "..", ".") for part in key.split("/")):
        raise ValueError(f"object key {key!r} is not a relative path inside the store")
    return path


class LocalObjectStore:
    """A directory tree; temporary files are dot-files next to their object and never listed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root.joinpath(*_checked(key).parts)

    def put_if_changed(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        try:
            if path.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def get(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        return sorted(k for k in keys if k.startswith(prefix))

    def location(self, key: str) -> str:
        return str(self.path(key))


def _missing(error: Exception) -> bool:
    code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


class S3ObjectStore:
    """Objects under `prefix/` in `bucket`, through a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _name(self, key: str) -> str:
        _checked(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _holds(self, name: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _missing(error):
                return False
            raise
        stored = head.get("Metadata", {}).get(SHA256_META)
        if stored is not None:
            return bool(stored == hashlib.sha256(data).hexdigest())
        etag = str(head.get("ETag", "")).strip('"')
        return etag == hashlib.md5(data, usedforsecurity=False).hexdigest()

    def put_if_changed(self, key: str, data: bytes) -> bool:
        name = self._name(key)
        if self._holds(name, data):
            return False
        self.client.put_object(
            Bucket=self.bucket,
            Key=name,
            Body=data,
            ContentType="application/json" if key.endswith(".json") else "application/octet-stream",
            Metadata={SHA256_META: hashlib.sha256(data).hexdigest()},
        )
        return True

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return bytes(body.read())

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix
        ):
            keys.extend(str(o["Key"])[len(base) :] for o in page.get("Contents", []))
        return sorted(keys)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._name(key)}"


def _bucket_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ObjectStoreConfigError(
            f"EPM_OBJECT_STORE_URL={url!r} is not s3://BUCKET[/PREFIX] "
            "(unset it to keep the snapshots in EPM_OBJECT_STORE_PATH)"
        )
    return parts.netloc, parts.path.strip("/")


def check_object_store(url: str | None, endpoint: str | None = None) -> None:
    """Refuse, at start-up, a bucket URL that cannot work: a malformed URL, an endpoint that is
    not http(s), or boto3 not installed."""
    if url is None:
        if endpoint is not None:
            raise ObjectStoreConfigError(
                "EPM_OBJECT_STORE_ENDPOINT is set but EPM_OBJECT_STORE_URL is not"
            )
        return
    _bucket_of(url)
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ObjectStoreConfigError(
            f"EPM_OBJECT_STORE_ENDPOINT={endpoint!r} is not an http(s):// URL"
        )
    if importlib.util.find_spec("boto3") is None:
        raise ObjectStoreConfigError(
            f"EPM_OBJECT_STORE_URL={url} needs boto3, which is not installed: pip install 'epm[s3]'"
        )


def open_object_store(url: str | None, path: Path, endpoint: str | None = None) -> ObjectStore:
    """The bucket when `url` names one, else the directory at `path`. Credentials and region
    come from the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_DEFAULT_REGION) or any other source boto3 reads."""
    check_object_store(url, endpoint)
    if url is None:
        return LocalObjectStore(path)
    bucket, prefix = _bucket_of(url)
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    return S3ObjectStore(client, bucket, prefix)


def mirror_folder(objects: ObjectStore, folder: Path, prefix: str, last: str) -> list[str]:
    """Copy every file under `folder` (dot-files, i.e. temporaries, aside) to `prefix/<relative
    path>`, `last` after all others, so `last` present in the store means the copy is whole;
    when the store already holds `last` with the same bytes nothing is read or written. Returns
    the keys written."""
    marker = folder / last
    if objects.get(f"{prefix}/{last}") == marker.read_bytes():
        return []
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and p != marker
    )
    written = []
    for path in [*files, marker]:
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        if objects.put_if_changed(key, path.read_bytes()):
            written.append(key)
    return written
