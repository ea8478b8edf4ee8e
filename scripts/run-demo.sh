#!/usr/bin/env bash
# Install epm into ./.venv and run the demo on the embedded default (no services needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/epm demo "$@"
