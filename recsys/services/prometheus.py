"""Prometheus from the system's ``prometheus`` binary (Debian package ``prometheus``).

Optional: ``recsys services up`` starts it only when named (``recsys services up
prometheus``). It scrapes the online API and the nearline workers listed in settings
(``scrape_api_targets``, ``scrape_nearline_targets``), written to file_sd target files at
start, and evaluates the recording rules and alerts of ``deploy/prometheus/rules.yml``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from recsys.services.base import Service, ServiceError, render_template

if TYPE_CHECKING:
    from shared.settings import Settings

# Not 9090: on a machine with systemd, Debian's package starts its own Prometheus there.
DEFAULT_PORT = 9095
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"


@dataclass(frozen=True)
class PrometheusConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    interval_s: float = 15.0  # scrape and rule evaluation
    api_targets: tuple[str, ...] = ("127.0.0.1:8000",)
    nearline_targets: tuple[str, ...] = ()
    rules: Path = RULES
    retention: str = "15d"

    @classmethod
    def from_settings(cls, settings: Settings) -> PrometheusConfig:
        return cls(
            port=settings.prometheus_port,
            api_targets=tuple(settings.scrape_api_targets),
            nearline_targets=tuple(settings.scrape_nearline_targets),
        )


def _duration(seconds: float) -> str:
    return f"{max(round(seconds * 1000), 1)}ms"


def render_config(cfg: PrometheusConfig, targets_dir: Path) -> str:
    """prometheus.yml: every path and address a JSON string (valid YAML, any character)."""
    return render_template(
        "prometheus.yml",
        {
            "interval": _duration(cfg.interval_s),
            "timeout": _duration(min(cfg.interval_s, 10.0)),
            "rules": json.dumps(str(cfg.rules)),
            "self": json.dumps(f"{cfg.host}:{cfg.port}"),
            "online_targets": json.dumps(str(targets_dir / "online.json")),
            "nearline_targets": json.dumps(str(targets_dir / "nearline.json")),
        },
    )


def targets_file(addresses: tuple[str, ...]) -> str:
    """One file_sd group; an empty list is a valid file with no targets."""
    return json.dumps([{"targets": list(addresses)}] if addresses else [], indent=2) + "\n"


def prometheus_argv(binary: str, cfg: PrometheusConfig, home: Path, data_dir: Path) -> list[str]:
    return [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--web.listen-address={cfg.host}:{cfg.port}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={cfg.retention}",
        "--log.level=warn",
    ]


def find_prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        raise ServiceError(
            "prometheus: prometheus is not on PATH; install it with `apt-get install"
            " prometheus` (Debian/Ubuntu) or `brew install prometheus` (macOS)"
        )
    return binary


class Prometheus(Service):
    name: ClassVar[str] = "prometheus"
    protocol: ClassVar[str] = "Prometheus HTTP"
    ready_timeout_s: ClassVar[float] = 30.0
    stop_timeout_s: ClassVar[float] = 30.0

    def __init__(
        self, state_dir: Path, cache_dir: Path, config: PrometheusConfig | None = None
    ) -> None:
        self.config = config or PrometheusConfig()
        super().__init__(state_dir, cache_dir, self.config.host, self.config.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def prepare(self) -> list[str]:
        binary = find_prometheus()
        if not self.config.rules.is_file():
            raise ServiceError(f"prometheus: no rules file at {self.config.rules}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        targets = self.home / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        (targets / "online.json").write_text(targets_file(self.config.api_targets))
        (targets / "nearline.json").write_text(targets_file(self.config.nearline_targets))
        (self.home / "prometheus.yml").write_text(render_config(self.config, targets))
        return prometheus_argv(binary, self.config, self.home, self.data_dir.resolve())

    def probe(self) -> str | None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            client.get("/-/ready").raise_for_status()
            info = client.get("/api/v1/status/buildinfo").json()
        version = info.get("data", {}).get("version")
        return str(version) if version else None
