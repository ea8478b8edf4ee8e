#!/usr/bin/env bash
# Debian tools some tests drive: chromium (the 17:00 report rendered headless) and prometheus
# (promtool checks the alert rules). Installed only when running as root on a machine with apt;
# elsewhere those tests skip and say why. Never fails the run: a missing tool is a skip.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "test-tools: ${need[*]} not installed (needs root and apt-get); those tests will skip"
  exit 0
fi
echo "test-tools: installing ${need[*]}"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
  >/tmp/epm-test-tools.log 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q >>/tmp/epm-test-tools.log 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
    >>/tmp/epm-test-tools.log 2>&1 || echo "test-tools: install failed (see /tmp/epm-test-tools.log)"
fi
exit 0
