"""MkDocs hooks (``hooks:`` in mkdocs.yml): pages that live outside ``docs/``.

- ``contributing.md`` is generated from the root ``CONTRIBUTING.md`` (one source, read on
  GitHub and on the site). Its links are written for the repository root: ``docs/X``
  becomes ``X``; a link to a file outside ``docs/`` (``README.md``, ``pyproject.toml``)
  has no page on the site, so it becomes its text and the path as code.
- Benchmark runs under ``docs/bench/`` that ``nav`` does not list yet are added to the
  "Runs" section, so a new ``recsys bench online`` report does not fail ``--strict``.

This file must stay outside ``docs/`` (MkDocs would publish it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

CONTRIBUTING = "CONTRIBUTING.md"
CONTRIBUTING_PAGE = "contributing.md"
RUNS_SECTION = "Runs"
RUNS_FOLDER = "bench"

# [text](target "title") and ![alt](target); the target has no spaces or parentheses.
_LINK = re.compile(
    r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)"
)
_REF_DEF = re.compile(r"^(?P<lead> {0,3}\[[^\]]+\]:\s*)(?P<target>\S+)", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_EXTERNAL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|#|/)")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _in_docs(target: str) -> str | None:
    """``target`` relative to docs/ when it points inside it, else None."""
    path = target[2:] if target.startswith("./") else target
    return path[len("docs/") :] if path.startswith("docs/") else None


def _rewrite_link(match: re.Match[str]) -> str:
    target = match.group("target")
    if _EXTERNAL.match(target):
        return match.group(0)
    inside = _in_docs(target)
    if inside is not None:
        title = match.group("title") or ""
        return f"{match.group('bang')}[{match.group('text')}]({inside}{title})"
    # A file outside docs/: no page to link to on the site.
    text = match.group("text").strip()
    if match.group("bang"):
        return text
    if not text or text.strip("`") == target:
        return f"`{target}`"
    return f"{text} (`{target}`)"


def _rewrite_ref(match: re.Match[str]) -> str:
    inside = _in_docs(match.group("target"))
    return match.group(0) if inside is None else f"{match.group('lead')}{inside}"


def contributing_markdown(source: str) -> str:
    """CONTRIBUTING.md with its links made relative to docs/ (fenced code left alone)."""
    out: list[str] = []
    in_fence = False
    for line in source.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
        elif in_fence:
            out.append(line)
        else:
            out.append(_REF_DEF.sub(_rewrite_ref, _LINK.sub(_rewrite_link, line)))
    return "".join(out)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    source = _root(config) / CONTRIBUTING
    if not source.is_file():
        raise PluginError(
            f"{source} is missing: the site's {CONTRIBUTING_PAGE} page is generated from it "
            "(scripts/docs_hooks.py)."
        )
    if files.get_file_from_path(CONTRIBUTING_PAGE) is not None:
        raise PluginError(
            f"docs/{CONTRIBUTING_PAGE} must not exist: it is generated from {CONTRIBUTING}."
        )
    content = contributing_markdown(source.read_text(encoding="utf-8"))
    files.append(File.generated(config, CONTRIBUTING_PAGE, content=content))
    return files


def _find_section(nav: list[Any], title: str) -> list[Any] | None:
    for entry in nav:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if isinstance(value, list):
                    if key == title:
                        return value
                    found = _find_section(value, title)
                    if found is not None:
                        return found
    return None


def _listed(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_listed(e) for e in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(_listed(v) for v in nav.values())) if nav else set()
    return set()


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    nav = config.nav
    runs = _find_section(nav, RUNS_SECTION) if isinstance(nav, list) else None
    if runs is None:
        return config
    listed = _listed(nav)
    folder = Path(config.docs_dir) / RUNS_FOLDER
    for page in sorted(folder.glob("*.md")):
        uri = f"{RUNS_FOLDER}/{page.name}"
        if uri not in listed:
            runs.append({page.stem: uri})
    return config
