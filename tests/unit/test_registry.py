"""Model bundles: staged creation, lineage, promotion and rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError, RecsysError
from shared.registry import ModelRegistry, UnknownBundle, new_version, registry_root


def _bundle(registry: ModelRegistry, parent: str | None = None, ndcg: float = 0.4) -> str:
    with registry.create(parent=parent, data_fingerprint="sha256:abc", params={"factors": 64}) as b:
        (b.path / "weights.bin").write_bytes(b"\x00" * 16)
        b.metrics["ndcg@10"] = ndcg
    return b.version


def test_bundle_records_lineage_params_metrics_and_files(tmp_path: Path) -> None:
    registry = ModelRegistry(f"file://{tmp_path}/models")
    first = _bundle(registry)
    second = _bundle(registry, parent=first, ndcg=0.5)
    info = registry.get(second)
    assert info.parent == first
    assert info.params == {"factors": 64}
    assert info.metrics == {"ndcg@10": 0.5}
    assert info.files == ["weights.bin"]
    assert info.data_fingerprint == "sha256:abc"
    assert [b.version for b in registry.list()] == [first, second]
    assert (registry.path(second) / "weights.bin").stat().st_size == 16


def test_failed_build_publishes_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry(f"file://{tmp_path}/models")

    def build() -> None:
        with registry.create(None, "fp", {}) as b:
            (b.path / "half.bin").write_bytes(b"x")
            raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError):
        build()
    assert registry.list() == []
    assert not any((tmp_path / "models" / "staging").iterdir())


def test_promote_and_rollback(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path / "models"))
    assert registry.live() is None
    a, b, c = _bundle(registry), _bundle(registry), _bundle(registry)
    registry.promote(a)
    registry.promote(b)
    registry.promote(c)
    registry.promote(c)  # promoting the live bundle again changes nothing
    assert registry.live() is not None and registry.live().version == c  # type: ignore[union-attr]
    assert registry.rollback().version == b
    assert registry.rollback().version == a
    with pytest.raises(RecsysError, match="nothing to roll back"):
        registry.rollback()


def test_unknown_bundle_is_named(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path))
    with pytest.raises(UnknownBundle, match="nope"):
        registry.promote("nope")


def test_versions_sort_by_time_and_urls_parse(tmp_path: Path) -> None:
    assert new_version(1_000) < new_version(2_000)
    assert registry_root("file:///abs/models") == Path("/abs/models")
    assert registry_root("file://var/models") == Path("var/models")
    with pytest.raises(ConfigError, match="s3://"):
        registry_root("s3://bucket/models")
