"""The recording rules and alerts in deploy/prometheus/: valid for promtool, unit-tested by
promtool on synthetic series (every alert firing and not firing), written against metric
names the tiers export, and the latency SLO at the budget's bucket."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from nearline.metrics import NearlineMetrics
from online.metrics import _BUCKETS, OnlineMetrics
from shared.settings import Settings

pytestmark = pytest.mark.prometheus

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "rules.yml"
TESTS = sorted((DEPLOY / "tests").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:  # the test command installs it; never skip the rules' checks
        pytest.fail("promtool is not on PATH: apt-get install prometheus", pytrace=False)
    return binary


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules(promtool: str) -> None:
    run([promtool, "check", "rules", str(RULES)])


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    assert TESTS, f"no promtool tests in {DEPLOY / 'tests'}"
    run([promtool, "test", "rules", *map(str, TESTS)])


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names, "no alerts in rules.yml"
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def exported_names() -> set[str]:
    """Every series name the API and the nearline worker can export."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    names = {"up"}
    for registry in (OnlineMetrics().registry, NearlineMetrics().registry):
        for family in registry.collect():
            names.update(family.name + s for s in suffixes[family.type])
    return names


def test_rules_read_only_metrics_the_tiers_export() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    used: set[str] = set()
    for group in groups:
        for rule in group["rules"]:
            # Names in a selector: an identifier followed by { [ ) or a space, not a label.
            used.update(
                re.findall(r"\b(recsys_[a-z_]+|up)\b(?=\s*[\[{)]|\s*[=<>!]|$)", rule["expr"])
            )
            for name in re.findall(r"recsys:[a-z_0-9:]+", rule["expr"]):
                assert name in recorded, f"{name} is not a recording rule"
    assert used, "no metric names found in the rules"
    assert used - exported_names() == set(), "rules read metrics nothing exports"


def test_the_latency_slo_bucket_is_the_default_budget() -> None:
    budget_s = Settings.model_fields["budget_ms"].default / 1000
    assert budget_s in _BUCKETS, "the request histogram has no bucket at the budget"
    les = set(re.findall(r'le="([^"]+)"', RULES.read_text()))
    assert les == {repr(budget_s)}
