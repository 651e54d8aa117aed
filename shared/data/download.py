"""Download MovieLens 100K from GroupLens and install it only once every file is proven.

The archive is streamed to a staging folder created beside the destination (so the
final renames stay on one file system), every pinned file is extracted and its sha256
compared with :data:`shared.data.sources.MOVIELENS_100K_FILES`, and only then are the
files moved into place. A failed, truncated or tampered download therefore leaves the
destination exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.data.sources import MOVIELENS_100K_FILES, MOVIELENS_100K_URL
from shared.errors import DataError, RecsysError

DEFAULT_URL = MOVIELENS_100K_URL
# The real archive is about 5 MB; anything far larger is not it, so stop reading.
_MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
_CHUNK_BYTES = 1 << 16
# Licence and description; copied when present but not pinned (copies differ slightly).
_UNPINNED = ("README",)

# Called with (bytes received so far, total bytes or None when the server does not say).
ProgressCallback = Callable[[int, int | None], None]


class DownloadError(RecsysError):
    """A download failed: the server could not be reached or did not serve the file."""


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_movielens_100k` did."""

    dest: Path
    downloaded: bool  # False when dest already held every file with the right checksum
    files: tuple[str, ...]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def unverified_files(directory: Path) -> list[str]:
    """Names of pinned MovieLens 100K files that are missing from ``directory`` or differ."""
    bad = []
    for name, (size, sha256) in MOVIELENS_100K_FILES.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size or sha256_file(path) != sha256:
            bad.append(name)
    return bad


def download_movielens_100k(
    dest_dir: Path | str,
    url: str = DEFAULT_URL,
    *,
    timeout_s: float = 60.0,
    progress: ProgressCallback | None = None,
) -> DownloadResult:
    """Fetch ``url`` (a zip holding ``ml-100k/u.data`` ...) and install it into ``dest_dir``.

    Does nothing when ``dest_dir`` already holds every pinned file with its checksum.
    Raises DownloadError for HTTP and network failures and DataError when the archive is
    not a zip, lacks a file, or a file's sha256 differs from the pinned one.
    """
    dest = Path(dest_dir)
    names = tuple(MOVIELENS_100K_FILES)
    if dest.is_dir() and not unverified_files(dest):
        return DownloadResult(dest, downloaded=False, files=names)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest}: exists and is not a folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        archive = staging / "archive.zip"
        _fetch(url, archive, timeout_s, progress)
        extracted = staging / "files"
        extracted.mkdir()
        installed = _extract_verified(archive, extracted, url)
        archive.unlink()
        _install(extracted, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DownloadResult(dest, downloaded=True, files=installed)


def _fetch(url: str, target: Path, timeout_s: float, progress: ProgressCallback | None) -> None:
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as response:
            if response.status_code != httpx.codes.OK:
                raise DownloadError(
                    f"GET {url}: HTTP {response.status_code} {response.reason_phrase}"
                )
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with target.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK_BYTES):
                    received += len(chunk)
                    if received > _MAX_ARCHIVE_BYTES:
                        raise DownloadError(
                            f"GET {url}: more than {_MAX_ARCHIVE_BYTES} bytes; not MovieLens 100K"
                        )
                    out.write(chunk)
                    if progress is not None:
                        progress(received, total)
    except httpx.HTTPError as exc:
        raise DownloadError(f"GET {url}: {type(exc).__name__}: {exc}") from exc


def _extract_verified(archive: Path, out_dir: Path, url: str) -> tuple[str, ...]:
    """Extract pinned (and unpinned extra) files into ``out_dir``; raise on any mismatch."""
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{url}: not a zip archive ({exc})") from exc
    with bundle:
        members = _members_by_name(bundle)
        for name, (size, expected) in MOVIELENS_100K_FILES.items():
            if name not in members:
                raise DataError(f"{url}: archive has no {name} (expected ml-100k/{name})")
            actual = _extract_one(bundle, members[name], out_dir / name, limit=size)
            if actual != expected:
                raise DataError(
                    f"{name} from {url}: sha256 mismatch: expected {expected}, got {actual}"
                )
        extras = [name for name in _UNPINNED if name in members]
        for name in extras:
            _extract_one(bundle, members[name], out_dir / name, limit=_MAX_ARCHIVE_BYTES)
    return (*MOVIELENS_100K_FILES, *extras)


def _members_by_name(bundle: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    # Only the base name is used, never the member path, so a crafted archive cannot
    # write outside the staging folder; "ml-100k/<name>" wins over other copies.
    wanted = {*MOVIELENS_100K_FILES, *_UNPINNED}
    members: dict[str, zipfile.ZipInfo] = {}
    for info in bundle.infolist():
        if info.is_dir():
            continue
        parent, _, base = info.filename.rpartition("/")
        if base in wanted and (base not in members or parent == "ml-100k"):
            members[base] = info
    return members


def _extract_one(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> str:
    """Copy one member to ``target`` and return its sha256; stop reading past ``limit``."""
    digest = hashlib.sha256()
    written = 0
    with bundle.open(info) as src, target.open("wb") as out:
        while block := src.read(_CHUNK_BYTES):
            written += len(block)
            if written > limit:  # a bigger file cannot match; don't let it fill the disk
                digest.update(b"(truncated: larger than expected)")
                break
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _install(extracted: Path, dest: Path) -> None:
    if not dest.exists():
        os.rename(extracted, dest)  # one atomic step: dest appears complete or not at all
        return
    # dest exists (e.g. holds a stale or partial copy): replace file by file; each
    # replace is atomic and everything was verified before the first one.
    for path in sorted(extracted.iterdir()):
        os.replace(path, dest / path.name)
