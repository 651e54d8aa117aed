"""README.md and CONTRIBUTING.md stay a front page whose links lead somewhere.

``mkdocs build --strict`` checks the links inside docs/; these two files live outside it,
so their links to the docs (and the anchors in them) are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^(```|~~~)")


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs' toc extension gives the headings of ``page``."""
    anchors: set[str] = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code and (m := HEADING.match(line)):
            text = re.sub(r"`([^`]*)`", r"\1", m.group(1))
            anchors.add(slugify(text, "-"))
    return anchors


def _local_links(page: Path) -> list[str]:
    links = LINK.findall(page.read_text(encoding="utf-8"))
    return [link for link in links if not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md"])
def test_links_lead_to_files_and_headings(name: str) -> None:
    page = ROOT / name
    links = _local_links(page)
    assert links, f"{name} has no local links: the pattern no longer matches"
    for link in links:
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{name} links to {link}: no such file"
        if anchor:
            assert target.suffix == ".md", f"{name} links to an anchor in {path}"
            assert anchor in _anchors(target), f"{name} links to {link}: no such heading"


def test_readme_is_a_front_page() -> None:
    """At most 300 lines, and every headline figure says where it was measured."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    section = text.split("## Headline figures", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    assert rows, "the headline figures table is missing"
    for row in rows:
        assert re.search(r"\]\(docs/[^)]+\.md(#[\w-]+)?\)", row), f"no docs link: {row}"
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", row), f"no date: {row}"


def test_anchor_slugs_match_mkdocs() -> None:
    """The slug rule above is MkDocs' own: a known heading of the docs resolves."""
    assert "test-suite" in _anchors(ROOT / "docs" / "benchmarks" / "index.md")
    assert "under-load" in _anchors(ROOT / "docs" / "online-cpu.md")
