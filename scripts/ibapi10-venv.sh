#!/usr/bin/env bash
# Build (or reuse) ./.venv-ibapi10: the project with its dev extras, but with `import ibapi` being
# a 10.x client (nautilus-ibapi 10.46.1, which installs the same `ibapi` module and needs
# protobuf) instead of the ibapi 9.81 that pyproject.toml pins. The compatibility run
# (tests/compat/test_ibapi10.py) runs the sim and bridge suites inside it, so both client
# generations are proven against the same code.
#
# Idempotent: a stamp records a hash of pyproject.toml and of the pins below; when it matches, the
# script does nothing but print the venv's python. Prints that python's path on stdout (and only
# that); pip's output goes to stderr. Exit code 3 means "no package index reachable" so a caller
# can tell a missing network from a broken install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${EPM_IBAPI10_VENV:-.venv-ibapi10}
PY=$VENV/bin/python
IBAPI10_PIN="nautilus-ibapi==10.46.1"
PROTOBUF_PIN="protobuf==6.33.6"  # the version pip resolves for nautilus-ibapi 10.46.1
STAMP=$VENV/.epm-ibapi10-stamp
BASE_PY=${PYTHON:-}
if [ -z "$BASE_PY" ]; then
  if [ -x .venv/bin/python ]; then
    # the interpreter the main venv was made from, so both runs use the same Python
    BASE_PY=$(.venv/bin/python -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python3"))')
  else
    BASE_PY=python3
  fi
fi

want=$( { cat pyproject.toml; echo "$IBAPI10_PIN $PROTOBUF_PIN"; "$BASE_PY" -V; } | sha256sum | cut -d' ' -f1)

if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "$PY"
  exit 0
fi

# one builder at a time (parallel test runs may call this together); re-check under the lock
mkdir -p "$VENV"
exec 9>"$VENV/.build.lock"
flock 9
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "$PY"
  exit 0
fi
if [ ! -x "$PY" ]; then
  "$BASE_PY" -m venv "$VENV" >&2
fi
# keep git status and ruff (which honours .gitignore files) out of the venv
echo "*" > "$VENV/.gitignore"
rm -f "$STAMP"

pipi() { "$PY" -m pip install --quiet --disable-pip-version-check "$@" >&2; }

# Both distributions own the `ibapi` package directory. On a rebuild, drop the 10.x client first so
# that reinstalling the project (which pulls ibapi 9.81) and uninstalling 9.81 cannot leave a
# half-deleted 10.x tree behind.
"$PY" -m pip uninstall --quiet --yes nautilus-ibapi ibapi >/dev/null 2>&1 || true

# A failed install: exit 3 when pip cannot even see the pinned 10.x client (no package index),
# else pip's failure stands (exit 1).
failed() {
  if ! "$PY" -m pip download --quiet --no-deps --dest "$VENV/.probe" "$IBAPI10_PIN" >&2; then
    rm -rf "$VENV/.probe"
    echo "ibapi10-venv: no package index reachable" >&2
    exit 3
  fi
  rm -rf "$VENV/.probe"
  echo "ibapi10-venv: pip failed" >&2
  exit 1
}

pipi -e ".[dev]" || failed
# remove 9.81 first so no file of it survives, then lay down the 10.x client whole
"$PY" -m pip uninstall --quiet --yes ibapi >&2
pipi --no-deps --force-reinstall "$IBAPI10_PIN" "$PROTOBUF_PIN" || failed
"$PY" -m pip check >&2 || true  # report only: ibapi 9.81 stays the declared dependency of epm
"$PY" - <<'EOF' >&2
import ibapi
import google.protobuf

assert ibapi.__version__.startswith("10."), ibapi.__version__
print("ibapi", ibapi.__version__, "protobuf", google.protobuf.__version__)
EOF
echo "$want" > "$STAMP"
echo "$PY"
