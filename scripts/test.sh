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
# Prometheus (`recsys services up prometheus`) and promtool, which checks and tests its rules.
command -v promtool >/dev/null || missing+=(prometheus)
# The browser tests drive Debian's Chromium (a test tool's own browser download cannot work).
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
# Go builds vegeta, the compiled load generator of `recsys bench online --generator vegeta`.
go_bin="$(command -v go || true)"
[ -n "$go_bin" ] || [ ! -x /usr/local/go/bin/go ] || go_bin=/usr/local/go/bin/go
[ -n "$go_bin" ] || missing+=(golang-go)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
echo "redis-server: $(redis-server --version | cut -d' ' -f3), java: $(java -version 2>&1 | head -1), $(/usr/bin/chromium --version 2>/dev/null)"

log "vegeta"
# Built once into the download cache outside the clone (about a minute), then reused.
cache_dir="${RECSYS_CACHE_DIR:-$HOME/.cache/tiered-recsys}"
vegeta_module=github.com/tsenart/vegeta/v12@v12.13.0
if [ -x "$cache_dir/bin/vegeta" ]; then
  echo "vegeta: $cache_dir/bin/vegeta"
else
  go_bin="${go_bin:-$(command -v go)}"
  # A failed build leaves the rest of the run standing: the vegeta smoke test then fails
  # with the command to run.
  GOBIN="$cache_dir/bin" "$go_bin" install "$vegeta_module" \
    || echo "warning: vegeta not built ($("$go_bin" version)); the vegeta benchmark test will fail"
fi

log "helm, kubeconform and the Kubernetes schemas"
# For tests/unit/test_helm.py, into the download cache outside the clone, each only when
# missing (helm builds in about three minutes the first time). A failure leaves the rest of
# the run standing: the Helm tests then fail with the command to run.
scripts/k8s-tools.sh || echo "warning: scripts/k8s-tools.sh failed; the Helm chart tests will fail"

log "lint and types"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

log "docs"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir site

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
