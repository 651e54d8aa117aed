#!/usr/bin/env bash
# The test command (`make test`): system packages, real services, lint, types, pytest.
# Services that were already running are left running; those this script started are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

log "system packages"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# The browser tests drive Debian's Chromium (a test tool's own browser download cannot work).
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
echo "redis-server: $(redis-server --version | cut -d' ' -f3), java: $(java -version 2>&1 | head -1), $(/usr/bin/chromium --version 2>/dev/null)"

log "lint and types"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

log "services"
# One status call: the services that do not answer now are the ones this run starts.
read -r -a started_here < <(.venv/bin/recsys services status --json 2>/dev/null | .venv/bin/python -c '
import json, sys
try:
    states = {name: s["state"] for name, s in json.load(sys.stdin).items()}
except ValueError:
    states = {}
print(" ".join(n for n in ("kafka", "cassandra", "redis") if states.get(n) not in ("healthy", "external")))
' || true)
stop_started() {
  if [ ${#started_here[@]} -gt 0 ]; then
    log "stopping ${started_here[*]}"
    .venv/bin/recsys services down "${started_here[@]}" || true
  fi
}
trap stop_started EXIT
.venv/bin/recsys services up

log "pytest"
.venv/bin/pytest "$@"
