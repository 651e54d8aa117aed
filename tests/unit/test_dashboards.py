"""The Grafana dashboards and the compose monitoring services (deploy/grafana/,
deploy/prometheus/compose.yml, docker-compose.yml): every query names only metrics the tiers
export or recording rules that exist, the provisioning files agree with the compose file,
and promtool accepts every query and the compose Prometheus' config. Docker cannot run here,
so the compose side is checked as files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys.monitor import BUNDLE_QUERY, PROMETHEUS_QUERIES
from tests.unit.test_prometheus_rules import RULES, exported_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_PROMETHEUS = ROOT / "deploy" / "prometheus" / "compose.yml"

# --- a small PromQL tokenizer: which identifiers are series names --------------------------

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<var>\$\{?\w+\}?)                                   # a Grafana variable
    |(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?    # 0.99, 1e3, and durations:
        (?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)        # 5m, 1h30m
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^(){}\[\],<>=:@])
    |(?P<space>\s+)
    """,
    re.VERBOSE,
)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _GROUPING | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot read {expr[pos:]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def series_names(expr: str) -> set[str]:
    """Identifiers that name series: not functions or aggregations (followed by "(", or by
    by/without), not keywords, not label names (inside {} or a by/on/... list), not in a [range]."""
    found: set[str] = set()
    toks = tokens(expr)
    braces = brackets = 0
    label_list = False  # inside the (...) after by/without/on/ignoring/group_*
    for i, (kind, text) in enumerate(toks):
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "op":
            braces += {"{": 1, "}": -1}.get(text, 0)
            brackets += {"[": 1, "]": -1}.get(text, 0)
            if text == ")":
                label_list = False
        elif kind == "ident" and not (braces or brackets or label_list):
            if text.lower() in _GROUPING and following == "(":
                label_list = True
            elif following == "(" or following in {"by", "without"}:
                continue  # a function, or an aggregation with its grouping first
            elif text.lower() not in _KEYWORDS:
                found.add(text)
    return found


# --- what the dashboards ask ---------------------------------------------------------------


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))  # rows hold their panels when collapsed


def dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every dashboard target and every query recsys monitor makes."""
    found = [
        (f"{path.name}: {panel['title']}", target["expr"])
        for path in DASHBOARDS
        for panel in panels(dashboard(path)["panels"])
        for target in panel.get("targets", [])
    ]
    found += [(f"recsys monitor: {name}", expr) for name, expr in PROMETHEUS_QUERIES.items()]
    return [*found, ("recsys monitor: bundle", BUNDLE_QUERY)]


def recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_the_tokenizer_finds_series_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, stage) (rate(a_seconds_bucket{job=~"x|y",'
        ' le!="+Inf"}[$__rate_interval]))) / ignoring (arm) group_left (version) b:c:rate5m'
        " offset 1h30m > bool 0.5 and on (instance) up unless nan_total[5m:30s] or Inf"
    )
    assert series_names(expr) == {"a_seconds_bucket", "b:c:rate5m", "up", "nan_total"}
    with pytest.raises(ValueError, match="cannot read"):
        tokens("rate(x[5m]) # a comment")


def test_the_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS} == {"overview", "online", "nearline", "offline"}


def test_every_query_names_metrics_that_exist() -> None:
    known = exported_names() | recorded()
    unknown = {}
    for where, expr in queries():
        names = series_names(expr)
        assert names, f"{where}: no series in {expr!r}"
        if names - known:
            unknown[where] = sorted(names - known)
    assert unknown == {}, "queries name metrics nothing exports and no rule records"


def test_dashboards_are_well_formed() -> None:
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    uids = [dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        data = dashboard(path)
        ids = [panel["id"] for panel in panels(data["panels"])]
        assert len(set(ids)) == len(ids), f"{path.name}: panel ids repeat"
        for panel in panels(data["panels"]):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{path.name}: {panel['title']} too wide"
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
            if panel["type"] not in {"row", "text"}:
                assert panel.get("targets"), f"{path.name}: {panel['title']} asks nothing"
    offline = dashboard(GRAFANA / "dashboards" / "offline.json")
    assert any(p["type"] == "text" for p in offline["panels"]), "offline says what it shows"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> repository path of each bind mount (named volumes left out)."""
    found = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_compose_monitoring_services(compose: dict[str, Any]) -> None:
    for name, image in (("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana-oss")):
        service = compose[name]
        repo, _, tag = service["image"].partition(":")
        assert repo == image and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), service["image"]
        assert service["profiles"] == ["monitoring"], "optional: not in a bare compose up"
        for target, source in mounts(service).items():
            assert source.exists(), f"{name} mounts {source}, which does not exist ({target})"
    prometheus = compose["prometheus"]
    assert "host.docker.internal:host-gateway" in prometheus["extra_hosts"]
    files = mounts(prometheus)
    assert files["/etc/prometheus/prometheus.yml"] == COMPOSE_PROMETHEUS
    assert files["/etc/prometheus/rules.yml"] == RULES
    config = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job in ("recsys-online", "recsys-nearline"):  # the names the rules and alerts use
        for target in jobs[job]["static_configs"][0]["targets"]:
            assert target.startswith("host.docker.internal:"), target
    port = jobs["recsys-nearline"]["static_configs"][0]["targets"][0].rsplit(":", 1)[1]
    nearline = compose["nearline"]["command"]
    assert nearline[nearline.index("--metrics-port") + 1] == port


def test_grafana_provisioning_matches_compose(compose: dict[str, Any]) -> None:
    files = mounts(compose["grafana"])
    provisioning = files["/etc/grafana/provisioning"]
    assert provisioning == GRAFANA / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    container_port = compose["prometheus"]["ports"][0].split(":")[1]
    assert source["type"] == "prometheus"
    assert source["url"] == f"http://prometheus:{container_port}"
    providers = yaml.safe_load((provisioning / "dashboards" / "recsys.yml").read_text())
    (provider,) = providers["providers"]
    assert files[provider["options"]["path"]] == GRAFANA / "dashboards"
    home = compose["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(provider["options"]["path"])
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()


# --- promtool: the queries parse, the compose config loads ---------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:  # the test command installs it, as for the rules' tests
        pytest.fail("promtool is not on PATH: apt-get install prometheus", pytrace=False)
    return binary


def _check(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.prometheus
def test_promtool_parses_every_query(promtool: str, tmp_path: Path) -> None:
    # Each query as a recording rule: promtool check rules parses its PromQL.
    rules = [
        {"record": f"check:query_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    _check([promtool, "check", "rules", str(path)])


@pytest.mark.prometheus
def test_promtool_checks_the_compose_config(promtool: str, tmp_path: Path) -> None:
    config = yaml.safe_load(COMPOSE_PROMETHEUS.read_text())
    config["rule_files"] = [str(RULES)]  # where the compose file mounts it, here
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    _check([promtool, "check", "config", str(path)])
