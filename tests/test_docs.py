"""The README and docs/ hold together: every relative link points at a file that exists, and at a heading that
exists when it names one; the README stays a short user's guide."""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[`~]*[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (a link inside code is not a link)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Every link target of a markdown text: inline links and images, reference definitions, HTML a/img."""
    text = prose(text)
    found = [*INLINE_LINK.findall(text), *REFERENCE.findall(text), *HTML_LINK.findall(text)]
    return [target[1:-1] if target.startswith("<") else target for target in found]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()  # a link keeps its text
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LNM")  # drops ` * : = ×
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a markdown file offers; a repeated heading's later anchors get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):  # inline code in a heading is its text
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path.read_text()):
        if EXTERNAL.match(target) or target.startswith("//"):
            continue  # http(s), mailto and other schemes: not files of this repository
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part.split("?", 1)[0])
        if file_part.startswith("/"):
            problems.append(f"{target}: absolute path (link relative to the file)")
            continue
        destination = (path.parent / file_part).resolve() if file_part else path
        shown = destination.relative_to(REPO) if destination.is_relative_to(REPO) else destination
        if not destination.exists():
            problems.append(f"{target}: no file {shown}")
        elif anchor and destination.suffix == ".md" and unquote(anchor).lower() not in anchors(destination):
            problems.append(f"{target}: no heading #{anchor} in {shown}")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files_that_exist(path):
    problems = broken_links(path)
    assert not problems, f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


def test_the_readme_is_a_short_guide_that_links_its_docs():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, "README.md: move details into docs/ and link them"
    for doc in ("data", "design", "results", "diagnose", "reliability", "gpu"):
        assert f"docs/{doc}.md" in text, doc
    setup = ["bash scripts/setup.sh && .venv/bin/python scripts/train_lawr.py --task Bimanual-Chunk profile=smoke",
             "bash scripts/setup.sh && .venv/bin/python -m pytest -q tests"]  # the two set-up commands
    assert all(command in text for command in setup)
    assert setup[1] in (REPO / ".ci" / "run").read_text()  # the README's test command is what CI runs


def test_the_check_finds_broken_links(tmp_path, monkeypatch):
    """The checker itself, on a small tree: each kind of broken link is found, good and external ones are not."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "docs" / "img").mkdir(parents=True)
    (tmp_path / "docs" / "img" / "plot.png").write_bytes(b"")
    heading = "## Results: `profile=cpu`, 2× budget\n\n"
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n" + heading + heading)
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[good](other.md) [anchor](other.md#results-profilecpu-2-budget)\n"
        "[second](other.md#results-profilecpu-2-budget-1) [up](../docs/other.md)\n"
        "![plot](img/plot.png) [self](#page) [web](https://example.org/x.md) [mail](mailto:a@b.c)\n"
        "`[code](missing_in_code.md)`\n\n```\n[fenced](missing_in_fence.md)\n```\n\n"
        "[gone](missing.md) ![gone plot](img/missing.png) [bad anchor](other.md#nowhere) [here](#nowhere)\n"
        "[ref]: ../nope.md\n"
    )
    assert broken_links(page) == [
        "missing.md: no file docs/missing.md",
        "img/missing.png: no file docs/img/missing.png",
        "other.md#nowhere: no heading #nowhere in docs/other.md",
        "#nowhere: no heading #nowhere in docs/page.md",
        "../nope.md: no file nope.md",
    ]
