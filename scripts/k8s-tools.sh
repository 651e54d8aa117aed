#!/usr/bin/env bash
# The tools tests/unit/test_helm.py checks the Helm chart with, each put into the download
# cache outside the clone only when missing (scripts/test.sh runs this):
#   bin/helm, bin/kubeconform   built with `go install` (pinned versions);
#   k8s-schemas/kubernetes/     Kubernetes' JSON schemas (strict), from the kubernetes-validate
#                               wheel on PyPI, for the oldest and newest versions it carries;
#   k8s-schemas/crds/           the KEDA ScaledObject and Prometheus Operator ServiceMonitor
#                               schemas, converted from the CRDs in their Go modules.
# kubeconform's default schemas come from GitHub, which CI cannot reach: registries only.
set -euo pipefail
cd "$(dirname "$0")/.."

cache_dir="${RECSYS_CACHE_DIR:-$HOME/.cache/tiered-recsys}"
go_bin="$(command -v go || echo /usr/local/go/bin/go)"
python="$PWD/.venv/bin/python"
helm_module=helm.sh/helm/v4/cmd/helm@v4.3.2
kubeconform_module=github.com/yannh/kubeconform@v0.8.0
kubernetes_validate=1.37.0
kubernetes_versions=(v1.25.0 v1.37.0)
keda_module=github.com/kedacore/keda/v2@v2.21.0
prometheus_operator_module=github.com/prometheus-operator/prometheus-operator@v0.85.0

export GOBIN="$cache_dir/bin" GOFLAGS=-mod=mod
[ -x "$GOBIN/helm" ] || "$go_bin" install "$helm_module"
[ -x "$GOBIN/kubeconform" ] || "$go_bin" install "${kubeconform_module/@//cmd/kubeconform@}"
echo "helm: $GOBIN/helm, kubeconform: $GOBIN/kubeconform"

schemas="$cache_dir/k8s-schemas"
stamp="kubernetes-validate $kubernetes_validate ${kubernetes_versions[*]}; $keda_module; $prometheus_operator_module"
if [ "$(cat "$schemas/VERSIONS" 2>/dev/null)" = "$stamp" ]; then
  echo "schemas: $schemas ($stamp)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$schemas" && mkdir -p "$schemas/crds"

# Kubernetes: the wheel's "-local-strict" folders hold one schema per kind that refers to a
# shared _definitions.json by an absolute URL (its $id); make those references relative so
# that kubeconform resolves them beside the file.
pip="$cache_dir/uv-0.13.8/bin/pip"
[ -x "$pip" ] || pip="python3 -m pip"
$pip download --quiet --no-deps --dest "$tmp" "kubernetes-validate==$kubernetes_validate"
"$python" - "$tmp"/kubernetes_validate-*.whl "$schemas/kubernetes" "${kubernetes_versions[@]}" <<'PY'
import json, sys, zipfile
from pathlib import Path

wheel, out, versions = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) != 4 or parts[1] != "kubernetes-json-schema":
            continue
        folder = parts[2]
        if folder.removesuffix("-local-strict") not in versions or folder.endswith("-local"):
            continue
        doc = json.loads(archive.read(name))
        doc.pop("$id", None)
        text = json.dumps(doc).replace('"/api/_definitions.json#', '"_definitions.json#')
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / parts[3]).write_text(text)
for version in versions:
    count = len(list((out / f"{version}-local-strict").glob("*.json")))
    print(f"kubernetes {version}: {count} schemas")
PY

# CRDs, converted by kubeconform's own script, named <group>-<kind>-<version>.json.
crd_file() { echo "$(cd "$tmp" && "$go_bin" mod download -json "$1" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/$2"; }
converter="$(crd_file "$kubeconform_module" scripts/openapi2jsonschema.py)"
(
  cd "$schemas/crds"
  FILENAME_FORMAT='{fullgroup}-{kind}-{version}' DENY_ROOT_ADDITIONAL_PROPERTIES=1 \
    "$python" "$converter" \
    "$(crd_file "$keda_module" config/crd/bases/keda.sh_scaledobjects.yaml)" \
    "$(crd_file "$prometheus_operator_module" example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml)"
)
echo "$stamp" > "$schemas/VERSIONS"
echo "schemas: $schemas ($stamp)"
