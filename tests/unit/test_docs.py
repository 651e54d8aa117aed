"""The committed reference pages (docs/reference/) match the code they are generated from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys import docs

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
REGENERATE = "run `make docs-reference` (python -m recsys.docs) and commit docs/reference/"


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return docs.render_reference()


def test_write_reference_writes_every_file(tmp_path: Path) -> None:
    written = docs.write_reference(tmp_path)
    assert sorted(p.name for p in written) == sorted(docs.REFERENCE_FILES)
    assert all(p.parent == tmp_path / "reference" for p in written)


@pytest.mark.parametrize("name", docs.REFERENCE_FILES)
def test_committed_reference_is_current(name: str, rendered: dict[str, str]) -> None:
    committed = DOCS_DIR / "reference" / name
    assert committed.is_file(), f"docs/reference/{name} is missing: {REGENERATE}"
    assert committed.read_text(encoding="utf-8") == rendered[name], (
        f"docs/reference/{name} no longer matches the code: {REGENERATE}"
    )


def test_output_is_deterministic(rendered: dict[str, str], tmp_path: Path) -> None:
    again = docs.render_reference()
    assert again == rendered
    home = str(Path.home())
    if home not in {"", "/"}:
        for name, text in rendered.items():
            assert home + "/" not in text, f"{name} names the home folder; show it as ~"


def test_every_setting_is_described_and_listed(rendered: dict[str, str]) -> None:
    from shared.settings import Settings

    page = rendered["settings.md"]
    for name, field in Settings.model_fields.items():
        assert (field.description or "").strip(), f"Settings.{name} has no description"
        assert f"`{docs.env_var(name)}`" in page, f"settings.md does not name {name}"
        assert docs.env_var(name) == f"RECSYS_{name.upper()}"


def _command_paths(command: object) -> Iterator[str]:
    for path, _, _ in docs.walk_commands(command):
        yield " ".join(path)


def test_cli_page_names_every_command(rendered: dict[str, str]) -> None:
    import typer.main

    from recsys.cli import app

    paths = list(_command_paths(typer.main.get_command(app)))
    assert len(paths) > 10  # the walk reached the sub-commands
    page = rendered["cli.md"]
    for path in paths:
        assert f"`{path}`" in page, f"cli.md does not document `{path}`"


def test_api_page_names_every_operation(rendered: dict[str, str]) -> None:
    document = docs.openapi_document()
    page = rendered["api.md"]
    operations = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    ]
    assert ("POST", "/v1/events") in operations  # the nearline router is included
    for method, path in operations:
        assert f"`{method} {path}`" in page, f"api.md does not document {method} {path}"
    for name in document.get("components", {}).get("schemas", {}):
        assert f"`{name}`" in page, f"api.md does not describe schema {name}"
