"""Where the worker processes keep their metric samples, and switching a process to that mode.

Kept apart from `registry.py` (which creates the histograms on import): the mode is decided
when prometheus_client creates its first metric, so it has to be switched on before.
"""

from __future__ import annotations

import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiproc_dir(data_dir: Path) -> Path:
    """`PROMETHEUS_MULTIPROC_DIR`, else `<data dir>/prometheus`."""
    named = os.environ.get(MULTIPROC_ENV)
    return Path(named) if named else data_dir / "prometheus"


def enable_multiprocess() -> Path:
    """Put this process (and the workers it forks) in multi-process mode; the directory.

    `epm worker` calls it before importing any task module: a metric created earlier would keep
    its samples in this process only, invisible to `epm metrics`.
    """
    from epm.settings import get_settings

    directory = multiproc_dir(get_settings().data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory
