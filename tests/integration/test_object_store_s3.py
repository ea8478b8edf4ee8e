"""The audit snapshots' object store on an S3 endpoint: moto's S3 server, started in-process on a
free port, is a real HTTP S3 API that boto3 talks to as it would to AWS or MinIO. The snapshot
scenario itself (`test_audit_snapshots.py`) runs over both stores through its `objects`
fixture; this module holds the server, that fixture's bucket half, and what is particular to a
bucket: the content-hash check before a PUT, keys under a prefix, and the start-up refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer
from sqlalchemy.engine import Engine

from epm.settings import Settings
from store.object_store import (
    LocalObjectStore,
    ObjectStore,
    ObjectStoreConfigError,
    S3ObjectStore,
    check_object_store,
    open_object_store,
)
from tasks.app import Stores
from tests.integration.test_report import r  # noqa: F401 - the Redis fixture

REPO = Path(__file__).resolve().parents[2]
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Objects:
    """A store under test plus what only its backend can tell: an object's version stamp (it
    changes exactly when the object is rewritten) and leftovers that are not objects."""

    store: ObjectStore
    kind: str
    root: Path | None = None
    client: Any = None
    bucket: str = ""
    prefix: str = ""

    def read(self, key: str) -> bytes:
        data = self.store.get(key)
        assert data is not None, f"no object {key}"
        return data

    def versions(self, key: str) -> list[str]:
        """The bucket's version ids of `key` (versioning is on: each PUT adds one)."""
        name = f"{self.prefix}/{key}" if self.prefix else key
        found = self.client.list_object_versions(Bucket=self.bucket, Prefix=name)
        return sorted(str(v["VersionId"]) for v in found.get("Versions", []) if v["Key"] == name)

    def stamp(self, key: str) -> object:
        """Equal before and after exactly when the object was not rewritten."""
        if self.root is not None:
            return (self.root / key).stat().st_mtime_ns
        return self.versions(key)

    def leftovers(self) -> list[str]:
        if self.root is not None:
            return [p.name for p in self.root.rglob("*.tmp")]
        return [k for k in self.store.list() if not k.endswith(".json")]


@pytest.fixture
def s3_objects(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Objects]:
    """A fresh versioned bucket, opened the way the task opens it (URL + endpoint + AWS env)."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    bucket = f"epm-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    store = open_object_store(f"s3://{bucket}/audit/snapshots", tmp_path / "unused", s3_endpoint)
    assert isinstance(store, S3ObjectStore)
    yield Objects(store, "s3", client=client, bucket=bucket, prefix="audit/snapshots")
    assert not (tmp_path / "unused").exists()


def test_the_bucket_is_written_only_when_the_content_changes(s3_objects: Objects) -> None:
    store, key = s3_objects.store, "2026/03/02/fills/sig-1.json"
    assert store.get(key) is None
    assert store.put_if_changed(key, b'{"a":1}\n') is True
    (first,) = s3_objects.versions(key)
    assert store.put_if_changed(key, b'{"a":1}\n') is False
    assert s3_objects.versions(key) == [first]
    assert store.put_if_changed(key, b'{"a":2}\n') is True
    assert len(s3_objects.versions(key)) == 2
    assert store.get(key) == b'{"a":2}\n'

    # The keys sit under the URL's prefix in the bucket; the store lists them without it.
    raw = s3_objects.client.list_objects_v2(Bucket=s3_objects.bucket)["Contents"]
    assert [o["Key"] for o in raw] == [f"audit/snapshots/{key}"]
    assert store.list() == [key] and store.list("2026/03/02/fills/") == [key]
    assert store.list("2026/03/03/") == []
    assert store.location(key) == f"s3://{s3_objects.bucket}/audit/snapshots/{key}"


def test_an_object_put_by_another_tool_is_compared_by_its_etag(s3_objects: Objects) -> None:
    # e.g. `aws s3 sync` of a local snapshot tree: no sha256 metadata, ETag = md5 of the body.
    client, bucket, key = s3_objects.client, s3_objects.bucket, "2026/03/02/intent/sig-1.json"
    client.put_object(Bucket=bucket, Key=f"audit/snapshots/{key}", Body=b"same\n")
    assert s3_objects.store.put_if_changed(key, b"same\n") is False
    assert len(s3_objects.versions(key)) == 1
    assert s3_objects.store.put_if_changed(key, b"other\n") is True


def test_a_key_cannot_leave_the_store(s3_objects: Objects, tmp_path: Path) -> None:
    for store in (s3_objects.store, LocalObjectStore(tmp_path)):
        for bad in ("../x.json", "/abs.json", "a//b.json", ""):
            with pytest.raises(ValueError, match="not a relative path"):
                store.put_if_changed(bad, b"x")


def test_the_settings_choose_the_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tasks.snapshots import objects_of

    monkeypatch.setenv("EPM_DATA_DIR", str(tmp_path))
    local = objects_of(Settings())
    assert isinstance(local, LocalObjectStore) and local.root == tmp_path / "objects"
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EPM_OBJECT_STORE_URL", "s3://snapshots-bucket/epm")
    monkeypatch.setenv("EPM_OBJECT_STORE_ENDPOINT", "http://127.0.0.1:9000")
    bucket = objects_of(Settings())
    assert isinstance(bucket, S3ObjectStore)
    assert (bucket.bucket, bucket.prefix) == ("snapshots-bucket", "epm")
    assert bucket.client.meta.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("url", "endpoint", "message"),
    [
        ("gs://bucket/x", None, "is not s3://BUCKET"),
        ("s3:///no-bucket", None, "is not s3://BUCKET"),
        ("s3://bucket", "minio:9000", "EPM_OBJECT_STORE_ENDPOINT='minio:9000' is not an http"),
        (None, "http://minio:9000", "EPM_OBJECT_STORE_URL is not"),
    ],
)
def test_unusable_bucket_settings_are_refused(
    url: str | None, endpoint: str | None, message: str
) -> None:
    with pytest.raises(ObjectStoreConfigError, match=message):
        check_object_store(url, endpoint)


def test_a_worker_without_boto3_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    # A real `celery -A tasks.app worker`, boto3 hidden (an install without the [s3] extra).
    hide = "import sys; sys.modules['boto3'] = None\n"
    worker = (
        "from celery.bin.celery import main\n"
        "sys.argv = ['celery', '-A', 'tasks.app', 'worker', '-Q', 'recon', '--pool', 'solo']\n"
        "main()\n"
    )
    env = {
        **os.environ,
        "EPM_OBJECT_STORE_URL": "s3://snapshots/epm",
        "EPM_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", hide + worker],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "epm: EPM_OBJECT_STORE_URL=s3://snapshots/epm needs boto3, which is not installed: "
        "pip install 'epm[s3]'"
    )
    # The embedded default opens its directory without boto3.
    local = (
        "from tasks.snapshots import objects_of\nfrom epm.settings import get_settings\n"
        "print(type(objects_of(get_settings())).__name__)\n"
    )
    env.pop("EPM_OBJECT_STORE_URL")
    done = subprocess.run(
        [sys.executable, "-c", hide + local],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "LocalObjectStore"), done.stderr


def test_the_day_report_folder_goes_to_the_bucket_manifest_last(
    engine: Engine,
    r: redis.Redis,  # noqa: F811
    s3_objects: Objects,
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tasks.reports import run_tick
    from tests.integration.test_report import seed_day

    monkeypatch.setenv("EPM_REPORT_DIR", str(tmp_path / "out"))
    settings = Settings(
        object_store_url=f"s3://{s3_objects.bucket}/audit/snapshots",
        object_store_endpoint=s3_endpoint,
    )
    seed_day(engine, r)
    after_close = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)  # 17:00 ET
    first = run_tick(Stores(settings=settings, engine=engine, redis=r, now=after_close))
    folder = tmp_path / "out" / "2026-12-03"
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "report.html" in local and "manifest.json" in local
    store, prefix = s3_objects.store, "reports/2026-12-03/"
    assert first["written"] is True and first["uploaded"] == len(local)
    assert store.list(prefix) == sorted(prefix + name for name in local)
    for name in local:
        assert s3_objects.read(prefix + name) == (folder / name).read_bytes()

    # A later tick of the day: the bucket has the manifest, nothing is sent again.
    manifest = prefix + "manifest.json"
    versions = s3_objects.versions(manifest)
    later = run_tick(Stores(settings=settings, engine=engine, redis=r, now=after_close))
    assert (later["written"], later["uploaded"]) == (False, 0)
    assert s3_objects.versions(manifest) == versions

    # An upload cut short (the manifest, sent last, missing): the next tick completes it.
    raw = s3_objects.client
    for name in ("manifest.json", "report.html"):
        raw.delete_object(Bucket=s3_objects.bucket, Key=f"audit/snapshots/{prefix}{name}")
    again = run_tick(Stores(settings=settings, engine=engine, redis=r, now=after_close))
    assert again["uploaded"] == 2
    assert store.list(prefix) == sorted(prefix + name for name in local)
