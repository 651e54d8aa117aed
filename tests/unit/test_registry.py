"""Model bundles: staged creation, lineage, promotion and rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError, RecsysError
from shared.registry import (
    MANIFEST,
    CorruptBundle,
    ModelRegistry,
    UnknownBundle,
    new_version,
    registry_root,
    verify_bundle,
)


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


def test_verify_bundle_checks_every_file_against_its_digest(tmp_path: Path) -> None:
    import hashlib

    import orjson

    registry = ModelRegistry(f"file://{tmp_path}/models")
    version = _bundle(registry)
    path = registry.path(version)
    info = verify_bundle(path)
    assert info.digests == {"weights.bin": hashlib.sha256(b"\x00" * 16).hexdigest()}

    (path / "weights.bin").write_bytes(b"\x00" * 15 + b"\x01")  # same size, one bit
    with pytest.raises(CorruptBundle, match=rf"bundle {version}: weights\.bin differs"):
        verify_bundle(path)
    (path / "weights.bin").unlink()
    with pytest.raises(CorruptBundle, match=r"weights\.bin is missing"):
        verify_bundle(path)

    # A bundle written before digests: its listed files must exist, their bytes are not known.
    (path / "weights.bin").write_bytes(b"anything")
    manifest = orjson.loads((path / MANIFEST).read_bytes())
    del manifest["digests"]
    (path / MANIFEST).write_bytes(orjson.dumps(manifest))
    assert verify_bundle(path).digests == {}
    (path / MANIFEST).write_bytes(b"{not json")
    with pytest.raises(CorruptBundle, match=r"unreadable manifest\.json"):
        verify_bundle(path)
