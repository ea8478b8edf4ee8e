"""`epm flower` against the machine's Redis with a real epm worker: over Flower's HTTP API, with
the credentials from EPM_FLOWER_BASIC_AUTH, the worker is listed with the queues it consumes;
without them (or with a wrong password) every page and API answers 401. Without credentials and
without `--insecure-no-auth`, `epm flower` does not start at all."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from epm.flower import FlowerConfigError, flower_argv, parse_basic_auth
from tests.integration.intake_procs import REPO, process_env, running, wait_for

AUTH = f"ops:{uuid.uuid4().hex}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, auth: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


@pytest.fixture(scope="module")
def flower(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("flower")
    env = process_env(
        EPM_REDIS_URL=redis_url,
        EPM_DATA_DIR=str(workdir / "data"),
        EPM_FLOWER_BASIC_AUTH=AUTH,
        EPM_LOG_FILE=str(workdir / "epm.log"),
    )
    name = f"flower-test-{uuid.uuid4().hex[:8]}@%h"
    worker = [
        sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "intake,ledger",
        "-c", "1", "-n", name, "-E", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    port = _free_port()
    flower_cmd = [sys.executable, "-m", "epm", "flower", "--port", str(port)]
    with (
        running(worker, env, workdir / "worker.log") as worker_proc,
        running(flower_cmd, env, workdir / "flower.log") as flower_proc,
    ):
        base = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: flower_proc.poll() is not None or _get(f"{base}/healthcheck", None)[0] == 200,
            timeout_s=90,
            what="Flower to answer",
        )
        assert flower_proc.poll() is None, (workdir / "flower.log").read_text()[-3000:]
        yield {"base": base, "worker": name.replace("%h", socket.gethostname()), "dir": workdir}
        assert worker_proc.poll() is None, (workdir / "worker.log").read_text()[-3000:]
        assert flower_proc.poll() is None, (workdir / "flower.log").read_text()[-3000:]


def test_flower_lists_the_worker_with_its_queues_given_the_credentials(
    flower: dict[str, Any],
) -> None:
    url = f"{flower['base']}/api/workers?refresh=1"

    def listed() -> dict[str, Any] | None:
        status, body = _get(url, AUTH)
        if status != 200:
            return None
        workers = json.loads(body)
        return workers.get(flower["worker"]) or None

    info = wait_for(listed, timeout_s=90, what="Flower to see the epm worker")
    queues = {q["name"] for q in info["active_queues"]}
    assert queues == {"intake", "ledger"}
    status, page = _get(f"{flower['base']}/workers", AUTH)
    assert status == 200 and b"Flower" in page


@pytest.mark.parametrize("auth", [None, "ops:wrong", "nobody:" + AUTH.split(":")[1]])
@pytest.mark.parametrize("path", ["/", "/workers", "/api/workers", "/api/tasks"])
def test_flower_refuses_without_the_right_credentials(
    flower: dict[str, Any], auth: str | None, path: str
) -> None:
    status, _ = _get(f"{flower['base']}{path}", auth)
    assert status == 401


def test_epm_flower_does_not_start_without_credentials(tmp_path: Path) -> None:
    port = _free_port()
    env = process_env(EPM_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-m", "epm", "flower", "--port", str(port)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "refusing to start Flower without authentication" in done.stderr
    assert "EPM_FLOWER_BASIC_AUTH=user:password" in done.stderr
    assert "Traceback" not in done.stderr
    assert _get(f"http://127.0.0.1:{port}/", None)[0] == 0  # nothing listens there


def test_flower_argv_takes_credentials_or_an_explicit_open_loopback_flag() -> None:
    argv = flower_argv(port=5555, address="127.0.0.1", auth="a:b,c:d", insecure_no_auth=False)
    assert argv == ["flower", "--port=5555", "--address=127.0.0.1", "--basic-auth=a:b,c:d"]
    open_local = flower_argv(port=5555, address="::1", auth=None, insecure_no_auth=True)
    assert not any(a.startswith("--basic-auth") for a in open_local)
    with pytest.raises(FlowerConfigError, match="refusing to start Flower"):
        flower_argv(port=5555, address="127.0.0.1", auth=None, insecure_no_auth=False)
    with pytest.raises(FlowerConfigError, match="only accepted on a loopback address"):
        flower_argv(port=5555, address="0.0.0.0", auth=None, insecure_no_auth=True)
    with pytest.raises(FlowerConfigError, match="--port must be 1-65535"):
        flower_argv(port=0, address="127.0.0.1", auth="a:b", insecure_no_auth=False)


@pytest.mark.parametrize("raw", ["hunter2", "ops:", ":pw", "a:b,", "a:b,,c:d"])
def test_malformed_credentials_are_refused_without_echoing_them(raw: str) -> None:
    with pytest.raises(FlowerConfigError) as refused:
        parse_basic_auth(raw)
    assert "must be user:password" in str(refused.value)
    assert "hunter2" not in str(refused.value)
