"""Checksummed MovieLens download, against a local HTTP server serving a test-built zip."""

from __future__ import annotations

import hashlib
import re
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recsys.data_cli import app
from shared.data.download import (
    DownloadError,
    download_movielens_100k,
    sha256_file,
    unverified_files,
)
from shared.data.movielens import load_ratings
from shared.data.sources import MOVIELENS_100K_FILES
from shared.errors import DataError


class _QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, folder it serves, paths requested) of a server on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=partial(httpd.serve_forever, poll_interval=0.02), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def build_zip(
    target: Path, source: Path, *, prefix: str = "ml-100k/", tamper: str | None = None
) -> None:
    """Zip the real files like GroupLens does; ``tamper`` flips one byte of that file."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in [*MOVIELENS_100K_FILES, "README"]:
            data = (source / name).read_bytes()
            if name == tamper:
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
            bundle.writestr(prefix + name, data)


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.endswith(".partial")]


def test_download_installs_verified_files(
    server: tuple[str, Path, list[str]], movielens_dir: Path, tmp_path: Path
) -> None:
    base, root, _ = server
    build_zip(root / "ml-100k.zip", movielens_dir)
    dest = tmp_path / "datasets" / "movielens-100k"

    result = download_movielens_100k(dest, f"{base}/ml-100k.zip")

    assert result.downloaded
    assert set(result.files) == {*MOVIELENS_100K_FILES, "README"}
    for name, (_, sha256) in MOVIELENS_100K_FILES.items():
        assert sha256_file(dest / name) == sha256
    assert len(load_ratings(dest)) == 100_000
    assert leftovers(dest.parent) == []


def test_second_download_does_not_touch_the_network(
    server: tuple[str, Path, list[str]], movielens_dir: Path, tmp_path: Path
) -> None:
    base, root, requests = server
    build_zip(root / "ml-100k.zip", movielens_dir)
    dest = tmp_path / "ml"
    download_movielens_100k(dest, f"{base}/ml-100k.zip")

    again = download_movielens_100k(dest, f"{base}/ml-100k.zip")

    assert not again.downloaded
    assert requests == ["/ml-100k.zip"]


def test_tampered_file_fails_and_leaves_dest_untouched(
    server: tuple[str, Path, list[str]], movielens_dir: Path, tmp_path: Path
) -> None:
    base, root, _ = server
    build_zip(root / "ml-100k.zip", movielens_dir, tamper="u.item")
    tampered = bytearray((movielens_dir / "u.item").read_bytes())
    tampered[100] ^= 1
    dest = tmp_path / "ml"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    url = f"{base}/ml-100k.zip"

    with pytest.raises(DataError) as caught:
        download_movielens_100k(dest, url)

    expected = MOVIELENS_100K_FILES["u.item"][1]
    actual = hashlib.sha256(bytes(tampered)).hexdigest()
    assert str(caught.value) == (
        f"u.item from {url}: sha256 mismatch: expected {expected}, got {actual}"
    )
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]
    assert leftovers(tmp_path) == []


def test_missing_archive_reports_http_status(
    server: tuple[str, Path, list[str]], tmp_path: Path
) -> None:
    base, _, _ = server
    dest = tmp_path / "ml"

    with pytest.raises(DownloadError, match=rf"GET {re.escape(base)}/nothing\.zip: HTTP 404 "):
        download_movielens_100k(dest, f"{base}/nothing.zip")

    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_unreachable_server_is_a_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"GET http://127\.0\.0\.1:9/x\.zip: ConnectError"):
        download_movielens_100k(tmp_path / "ml", "http://127.0.0.1:9/x.zip", timeout_s=5)


def test_not_a_zip(server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    base, root, _ = server
    (root / "page.zip").write_text("<html>moved</html>")

    with pytest.raises(DataError, match="not a zip archive"):
        download_movielens_100k(tmp_path / "ml", f"{base}/page.zip")
    assert not (tmp_path / "ml").exists()


def test_archive_missing_a_file(
    server: tuple[str, Path, list[str]], movielens_dir: Path, tmp_path: Path
) -> None:
    base, root, _ = server
    with zipfile.ZipFile(root / "partial.zip", "w") as bundle:
        bundle.write(movielens_dir / "u.data", "ml-100k/u.data")

    with pytest.raises(DataError, match=r"archive has no u\.item \(expected ml-100k/u\.item\)"):
        download_movielens_100k(tmp_path / "ml", f"{base}/partial.zip")


def test_stale_copy_is_replaced_and_other_files_kept(
    server: tuple[str, Path, list[str]], movielens_dir: Path, tmp_path: Path
) -> None:
    base, root, _ = server
    build_zip(root / "flat.zip", movielens_dir, prefix="")  # members at the archive root
    dest = tmp_path / "ml"
    dest.mkdir()
    (dest / "u.data").write_text("1\t2\t3\t4\n")
    (dest / "notes.txt").write_text("mine")
    assert "u.data" in unverified_files(dest)

    result = download_movielens_100k(dest, f"{base}/flat.zip")

    assert result.downloaded
    assert unverified_files(dest) == []
    assert (dest / "notes.txt").read_text() == "mine"


def test_cli_download_with_url_and_dest(
    server: tuple[str, Path, list[str]], movielens_dir: Path, tmp_path: Path
) -> None:
    base, root, _ = server
    build_zip(root / "ml-100k.zip", movielens_dir)
    dest = tmp_path / "ml"
    args = ["download", "movielens-100k", "--dest", str(dest), "--url", f"{base}/ml-100k.zip"]

    first = CliRunner().invoke(app, args)
    second = CliRunner().invoke(app, args)

    assert first.exit_code == 0, first.output
    assert f"MovieLens 100K: 7 files installed in {dest}, sha256 verified" in first.stdout
    assert second.stdout.strip() == f"MovieLens 100K: already present and verified in {dest}"
    assert unverified_files(dest) == []
