#!/usr/bin/env bash
# Install epm with its dev extras into ./.venv and run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/run-tests.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
bash scripts/test-tools.sh
exec .venv/bin/python -m pytest "$@"
