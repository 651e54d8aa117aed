"""docker-compose.yml cannot run here (no Docker engine): check it against the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import typer
import yaml

from recsys.cli import app
from shared.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
INFRA = {"kafka": 9092, "cassandra": 9042, "redis": 6379}
APPS = ["storage-init", "offline", "nearline", "api"]
MONITORING = ["prometheus", "grafana"]  # optional; tests/unit/test_dashboards.py checks them


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, Any] = data["services"]
    return result


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert set(services) == {*INFRA, *APPS, *MONITORING}


@pytest.mark.parametrize("name", list(INFRA))
def test_infrastructure_has_healthcheck_and_port(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert service["healthcheck"]["test"]
    assert f"{INFRA[name]}:{INFRA[name]}" in service["ports"]


def test_kafka_has_every_kraft_variable() -> None:
    env = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]["environment"]
    required = {
        "CLUSTER_ID",
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    }
    assert required <= set(env)


@pytest.mark.parametrize("name", APPS)
def test_app_environment_matches_settings(services: dict[str, Any], name: str) -> None:
    env = services[name]["environment"]
    fields = {f"RECSYS_{f.upper()}" for f in Settings.model_fields}
    assert set(env) <= fields, f"unknown variables: {set(env) - fields}"
    urls = {f"RECSYS_{f.upper()}" for f in Settings.model_fields if f.endswith("_url")}
    assert urls <= set(env), f"{name} misses {urls - set(env)}"
    for var in urls - {"RECSYS_REGISTRY_URL"}:
        parts = urlsplit(env[var])
        assert parts.hostname in INFRA, f"{var} points at {parts.hostname}"
        assert parts.port == INFRA[parts.hostname]
    Settings.model_validate({k.removeprefix("RECSYS_").lower(): v for k, v in env.items()})


def _depends_on_healthy_infra(services: dict[str, Any], name: str, seen: set[str]) -> set[str]:
    healthy: set[str] = set()
    for dep, spec in services[name].get("depends_on", {}).items():
        if dep in INFRA and spec["condition"] == "service_healthy":
            healthy.add(dep)
        elif dep not in seen:
            healthy |= _depends_on_healthy_infra(services, dep, seen | {dep})
    return healthy


@pytest.mark.parametrize("name", APPS)
def test_apps_wait_for_healthy_services(services: dict[str, Any], name: str) -> None:
    assert _depends_on_healthy_infra(services, name, {name}) == set(INFRA)


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")  # typer vendors click: duck-type the group


def _resolves(argv: list[str]) -> bool:
    command: Any = typer.main.get_command(app)
    for word in argv[1:]:
        if word.startswith("-") or not _is_group(command):
            break
        command = command.get_command(click.Context(command), word)
        if command is None:
            return False
    return not _is_group(command)


PENDING: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=PENDING[n]))
        if n in PENDING
        else n
        for n in APPS
    ],
)
def test_app_commands_exist_in_the_cli(services: dict[str, Any], name: str) -> None:
    argv = services[name]["command"]
    assert argv[0] == "recsys"
    assert _resolves(argv), f"`{' '.join(argv)}` is not a recsys command"
