"""The Helm chart in deploy/helm/tiered-recsys: `helm lint`, and `helm template` with the
default values and with KEDA, the Prometheus Operator and Spark on Kubernetes, checked by
kubeconform -strict against Kubernetes' JSON schemas (the oldest and newest versions the
chart is checked on) and the KEDA and ServiceMonitor CRDs; then a few rendered facts.

helm, kubeconform and the schemas come from the download cache, put there by
scripts/k8s-tools.sh (scripts/test.sh runs it); a missing one fails with that command.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "tiered-recsys"
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
FULL = [
    "--set=keda.enabled=true",
    "--set=serviceMonitor.enabled=true",
    "--set=offline.spark.master=k8s://https://kubernetes.default.svc",
]

# A pod listens on the pod's own network namespace: every interface is what it must bind.
ANY_ADDRESS = "0.0.0.0"  # noqa: S104
WORKLOADS = {"Deployment", "CronJob", "Job"}

Manifest = dict[str, Any]


def _cache() -> Path:
    default = Path.home() / ".cache" / "tiered-recsys"
    return Path(os.environ.get("RECSYS_CACHE_DIR", default))


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    cache = _cache()
    found = {
        "helm": cache / "bin" / "helm",
        "kubeconform": cache / "bin" / "kubeconform",
        "kubernetes": cache / "k8s-schemas" / "kubernetes",
        "crds": cache / "k8s-schemas" / "crds",
    }
    missing = [str(path) for path in found.values() if not path.exists()]
    if missing or not (cache / "k8s-schemas" / "VERSIONS").exists():
        pytest.fail(
            f"missing {', '.join(missing) or 'k8s-schemas/VERSIONS'}: run scripts/k8s-tools.sh",
            pytrace=False,
        )
    return found


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, check=False, input=stdin, capture_output=True, text=True, timeout=120
    )


def _template(tools: dict[str, Path], *args: str) -> str:
    argv = [str(tools["helm"]), "template", "rs", str(CHART), "--namespace", "recsys", *args]
    done = _run(argv)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stderr}"
    return done.stdout


def _kubeconform(tools: dict[str, Path], manifests: str, version: str) -> str:
    kubernetes = "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
    argv = [
        str(tools["kubeconform"]),
        "-strict",
        "-summary",
        "-kubernetes-version",
        version,
        "-schema-location",
        f"{tools['kubernetes']}/{kubernetes}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        "-schema-location",
        f"{tools['crds']}/{{{{ .Group }}}}-{{{{ .ResourceKind }}}}-{{{{ .ResourceAPIVersion }}}}.json",
        "-",
    ]
    done = _run(argv, manifests)
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def _render(tools: dict[str, Path], *args: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(_template(tools, *args)) if doc]


def _one(manifests: list[Manifest], kind: str, suffix: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {len(found)} rendered"
    return found[0]


def _containers(manifest: Manifest) -> Iterator[Manifest]:
    spec = manifest["spec"]
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    yield from spec["template"]["spec"]["containers"]


def test_helm_lint_passes(tools: dict[str, Path]) -> None:
    for values in ([], FULL):
        done = _run([str(tools["helm"]), "lint", "--strict", str(CHART), *values])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", [[], FULL], ids=["defaults", "keda-servicemonitor-k8s"])
def test_rendered_manifests_match_the_kubernetes_schemas(
    tools: dict[str, Path], values: list[str], version: str
) -> None:
    manifests = _template(tools, *values)
    report = _kubeconform(tools, manifests, version)
    count = sum(1 for doc in yaml.safe_load_all(manifests) if doc)
    assert report.startswith("exit 0\n"), report
    assert f"{count} resources found" in report and f"Valid: {count}," in report, report


def test_kubeconform_rejects_what_the_schemas_forbid(tools: dict[str, Path]) -> None:
    # The check above can fail: an unknown probe field and a string where KEDA wants a number.
    bad = _template(
        tools, *FULL, "--set=api.readinessProbe.bogus=1", "--set=keda.cooldownPeriod=soon"
    )
    report = _kubeconform(tools, bad, KUBERNETES_VERSIONS[-1])
    assert report.startswith("exit 1\n"), report
    assert "additional properties 'bogus' not allowed" in report
    assert "/spec/cooldownPeriod': got string, want integer" in report


def test_the_api_is_probed_autoscaled_on_cpu_and_kept_available(tools: dict[str, Path]) -> None:
    manifests = _render(tools)
    api = _one(manifests, "Deployment", "-api")
    (container,) = _containers(api)
    assert container["command"][:7] == [
        "recsys",
        "online",
        "serve",
        "--host",
        ANY_ADDRESS,
        "--port",
        "8000",
    ]
    assert container["command"][7:9] == ["--workers", "2"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "replicas" not in api["spec"]  # the HPA owns the count

    hpa = _one(manifests, "HorizontalPodAutoscaler", "-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": api["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}

    pdb = _one(manifests, "PodDisruptionBudget", "-api")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/component"] == "api"


def test_workers_scale_on_lag_by_hpa_or_keda(tools: dict[str, Path]) -> None:
    manifests = _render(tools)
    (worker,) = _containers(_one(manifests, "Deployment", "-nearline"))
    assert worker["command"] == [
        "recsys", "nearline", "run", "--group", "nearline",
        "--metrics-port", "9108", "--metrics-host", ANY_ADDRESS,
    ]  # fmt: skip
    (metric,) = _one(manifests, "HorizontalPodAutoscaler", "-nearline")["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "recsys_nearline_lag_records"
    assert not [m for m in manifests if m["kind"] == "ScaledObject"]

    keda = _render(tools, "--set=keda.enabled=true")
    assert not [
        m
        for m in keda
        if m["kind"] == "HorizontalPodAutoscaler" and "nearline" in m["metadata"]["name"]
    ]
    scaled = _one(keda, "ScaledObject", "-nearline")
    assert scaled["spec"]["scaleTargetRef"]["name"].endswith("-nearline")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "nearline"
    assert trigger["metadata"]["topic"] == "events"
    assert trigger["metadata"]["bootstrapServers"] == "kafka:9092"


def test_the_offline_cronjob_retrains_when_due_on_the_configured_spark(
    tools: dict[str, Path],
) -> None:
    manifests = _render(tools, "--set=offline.spark.master=spark://spark-master:7077")
    cron = _one(manifests, "CronJob", "-offline")
    (job,) = _containers(cron)
    assert job["command"][:4] == ["recsys", "offline", "schedule", "--once"]
    assert "http://rs-tiered-recsys-api:8000" in job["command"]
    config = _one(manifests, "ConfigMap", "-config")["data"]
    assert config["RECSYS_SPARK_MASTER"] == "spark://spark-master:7077"
    assert not [m for m in manifests if m["kind"] == "Role"]

    on_k8s = _render(tools, "--set=offline.spark.master=k8s://https://kubernetes.default.svc")
    spark_defaults = _one(on_k8s, "ConfigMap", "-spark")["data"]["spark-defaults.conf"]
    assert "spark.kubernetes.container.image tiered-recsys:0.1.0" in spark_defaults
    assert "persistentVolumeClaim.data.options.claimName rs-tiered-recsys-data" in spark_defaults
    assert _one(on_k8s, "RoleBinding", "-spark")["subjects"][0]["name"] == "rs-tiered-recsys"


def test_settings_come_from_the_configmap_and_tokens_from_the_secret(
    tools: dict[str, Path],
) -> None:
    token = "admin-token-that-must-not-leak"
    manifests = _render(
        tools, f"--set=secrets.adminToken={token}", "--set=kafka.bootstrapServers=k1:9092\\,k2:9092"
    )
    config = _one(manifests, "ConfigMap", "-config")["data"]
    assert config["RECSYS_EVENT_LOG_URL"] == "kafka://k1:9092,k2:9092/events"
    assert config["RECSYS_USER_STATE_URL"] == "redis://redis:6379/0"
    assert config["RECSYS_CANDIDATES_URL"] == "cassandra://cassandra:9042/recsys"
    assert config["RECSYS_REGISTRY_URL"] == "file:///data/models"
    assert "RECSYS_ADMIN_TOKEN" not in config

    secret = _one(manifests, "Secret", "-tokens")
    assert base64.b64decode(secret["data"]["RECSYS_ADMIN_TOKEN"]).decode() == token
    assert "RECSYS_EVENTS_TOKEN" not in secret["data"]  # empty: left unset
    for manifest in manifests:
        if manifest["kind"] == "Secret":
            continue
        assert token not in yaml.safe_dump(manifest), manifest["metadata"]["name"]
        if manifest["kind"] not in WORKLOADS:
            continue
        for container in _containers(manifest):
            env = {e["name"]: e for e in container["env"]}
            ref = env["RECSYS_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert ref == {
                "name": "rs-tiered-recsys-tokens",
                "key": "RECSYS_ADMIN_TOKEN",
                "optional": True,
            }
            assert container["envFrom"] == [{"configMapRef": {"name": "rs-tiered-recsys-config"}}]
            if manifest["kind"] != "Job":  # storage init touches no file
                assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]

    existing = _render(tools, "--set=secrets.existingSecret=recsys-tokens")
    assert not [m for m in existing if m["kind"] == "Secret"]
    (api,) = _containers(_one(existing, "Deployment", "-api"))
    env = {e["name"]: e for e in api["env"]}
    assert env["RECSYS_EVENTS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "recsys-tokens"
