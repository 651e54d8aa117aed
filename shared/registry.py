"""Model bundles and their registry: a folder, locally or on a mounted volume.

Layout under the root::

    bundles/<version>/manifest.json   version, parent, data fingerprint, params, metrics, files
    bundles/<version>/...             the artefacts (embeddings, index, ranker weights)
    live.json                         {"version": ..., "history": [older live versions]}

A bundle is built in a staging folder and renamed into place only when complete, and the
live pointer is replaced atomically, so a reader never sees a half-written bundle and a
failed job leaves what was live untouched. The manifest records each file's SHA-256;
:func:`verify_bundle` refuses a bundle whose files are missing or changed since (a disk, a
copy or a hand that broke them), which is what the online tier checks before it loads one.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from shared.errors import ConfigError, RecsysError

MANIFEST = "manifest.json"


class UnknownBundle(RecsysError):
    """No bundle with that version in the registry."""


class CorruptBundle(RecsysError):
    """A bundle's files are missing or differ from what its manifest recorded."""


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle's manifest records."""

    version: str
    parent: str | None
    created_at: float
    data_fingerprint: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # file -> SHA-256 (hex)


DECISIONS = "decisions.jsonl"  # the registry's history of decisions, beside live.json


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_bundle(path: Path) -> BundleInfo:
    """The manifest of the bundle at ``path``, once every file it lists is there and, where
    it recorded digests (bundles since 2026-12-06), unchanged; else :class:`CorruptBundle`
    naming the first file at fault."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise CorruptBundle(f"bundle at {path}: no {MANIFEST}")
    try:
        info = _read_manifest(manifest)
    except (ValueError, TypeError) as err:
        raise CorruptBundle(f"bundle at {path}: unreadable {MANIFEST} ({err})") from None
    for name in info.files:
        file = path / name
        if not file.is_file():
            raise CorruptBundle(f"bundle {info.version}: {name} is missing")
        expected = info.digests.get(name)
        if expected is not None and file_digest(file) != expected:
            raise CorruptBundle(f"bundle {info.version}: {name} differs from its manifest")
    return info


def new_version(now: float | None = None) -> str:
    """Sortable by creation time, unique across concurrent jobs: ``20261129T103000Z-3fa2c1``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{secrets.token_hex(3)}"


def registry_root(url: str) -> Path:
    """``file://relative/path``, ``file:///absolute/path`` or a bare path."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return Path(parts.netloc + parts.path) if parts.scheme else Path(url)
    raise ConfigError(f"model registry: unknown URL scheme in {url!r} (expected file://)")


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    os.replace(tmp, path)


class ModelRegistry:
    """Create, list, promote and roll back bundles."""

    role = "model registry"

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = registry_root(url)
        self._bundles = self.root / "bundles"
        self._live = self.root / "live.json"

    @contextmanager
    def create(
        self,
        parent: str | None,
        data_fingerprint: str,
        params: Mapping[str, Any],
    ) -> Iterator[BundleBuilder]:
        """Yield a builder writing into a staging folder; publish it on success, drop it on error."""
        version = new_version()
        staging = self.root / "staging" / version
        staging.mkdir(parents=True)
        builder = BundleBuilder(version, staging, parent, data_fingerprint, dict(params))
        try:
            yield builder
            builder.seal()
            self._bundles.mkdir(parents=True, exist_ok=True)
            os.replace(staging, self._bundles / version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def list(self) -> list[BundleInfo]:
        """Every published bundle, oldest first."""
        if not self._bundles.exists():
            return []
        bundles = [_read_manifest(m) for m in self._bundles.glob(f"*/{MANIFEST}")]
        return sorted(bundles, key=lambda b: (b.created_at, b.version))

    def get(self, version: str) -> BundleInfo:
        manifest = self._bundles / version / MANIFEST
        if not manifest.is_file():
            raise UnknownBundle(f"no bundle {version!r} in {self.root}")
        return _read_manifest(manifest)

    def path(self, version: str) -> Path:
        """Folder of a published bundle."""
        self.get(version)
        return self._bundles / version

    def _pointer(self) -> dict[str, Any]:
        if not self._live.exists():
            return {"version": None, "history": []}
        data: dict[str, Any] = orjson.loads(self._live.read_bytes())
        return data

    def live(self) -> BundleInfo | None:
        version = self._pointer()["version"]
        return None if version is None else self.get(version)

    def promote(self, version: str) -> BundleInfo:
        """Make ``version`` live; the previous live one is remembered for rollback."""
        info = self.get(version)
        pointer = self._pointer()
        if pointer["version"] != version:
            history = (
                [*pointer["history"], pointer["version"]]
                if pointer["version"]
                else pointer["history"]
            )
            self.root.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(self._live, {"version": version, "history": history})
        return info

    def rollback(self) -> BundleInfo:
        """Make the previously live bundle live again."""
        pointer = self._pointer()
        if not pointer["history"]:
            raise RecsysError("nothing to roll back to: no bundle was live before the current one")
        *history, previous = pointer["history"]
        info = self.get(previous)
        _write_json_atomic(self._live, {"version": previous, "history": history})
        return info

    def record(self, decision: Mapping[str, Any]) -> dict[str, Any]:
        """Append one decision (a promotion, a refusal by the gate, a rollback, a retrain)
        to the registry's history, with the time; returns what was written.

        One JSON object per line in ``decisions.jsonl``, appended with a single write, so
        concurrent writers never interleave inside a line on a local file system.
        """
        entry = {"at": time.time(), **decision}
        self.root.mkdir(parents=True, exist_ok=True)
        line = orjson.dumps(entry, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        with (self.root / DECISIONS).open("ab") as f:
            f.write(line)
        return entry

    def decisions(self) -> builtins.list[dict[str, Any]]:
        """Every recorded decision, oldest first."""
        path = self.root / DECISIONS
        if not path.is_file():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class BundleBuilder:
    """Collects a bundle's files and metrics before it is published."""

    def __init__(
        self,
        version: str,
        path: Path,
        parent: str | None,
        data_fingerprint: str,
        params: dict[str, Any],
    ) -> None:
        self.version = version
        self.path = path
        self.parent = parent
        self.data_fingerprint = data_fingerprint
        self.params = params
        self.metrics: dict[str, float] = {}

    def seal(self) -> BundleInfo:
        files = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())
        info = BundleInfo(
            digests={name: file_digest(self.path / name) for name in files},
            version=self.version,
            parent=self.parent,
            created_at=time.time(),
            data_fingerprint=self.data_fingerprint,
            params=self.params,
            metrics=self.metrics,
            files=files,
        )
        _write_json_atomic(self.path / MANIFEST, asdict(info))
        return info


def _read_manifest(path: Path) -> BundleInfo:
    return BundleInfo(**orjson.loads(path.read_bytes()))
