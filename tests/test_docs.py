"""The documentation holds together: README.md stays short, and every relative link and ``#anchor``
in README.md and docs/*.md resolves to a file and a heading that exist.

Anchors follow GitHub's rule for heading ids: lower case, punctuation other than ``-`` and ``_``
dropped, spaces turned into ``-``, and ``-1``, ``-2``, ... appended to repeated headings.
Links inside code blocks and code spans are not links and are ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 300

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
HTML_ID = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")


def pages() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's id for a heading: markup dropped, then lower case, punctuation out, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set(HTML_ID.findall(path.read_text()))
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text()))


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of ``path`` whose file or anchor does not exist, as 'target: why'."""
    bad = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target}: no file {dest.relative_to(root) if dest.is_relative_to(root) else dest}")
            continue
        if anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(f"{target}: no heading with id #{anchor} in {dest.relative_to(root)}")
    return bad


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move detail into docs/ (at most {README_MAX_LINES})"


def test_readme_links_are_found():
    # A parser that finds nothing would pass every page: the README links to every docs page.
    found = links(ROOT / "README.md")
    for page in pages()[1:]:
        assert f"docs/{page.name}" in found, f"README.md does not link to docs/{page.name}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    assert broken_links(page) == []


def test_checker_catches_broken_links(tmp_path):
    """The checker itself: a missing file, a missing anchor, a wrong-case anchor are reported;
    links in code, external links and good anchors are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## The `fast` path, explained\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n## Title\n\n"
        "[ok](docs/other.md#the-fast-path-explained) [self](#title-1) [web](https://example.com/x#y)\n"
        "[gone](docs/missing.md) [bad anchor](docs/other.md#nope) [case](#Title)\n"
        "`[in code](nowhere.md)`\n\n```\n[in fence](nowhere.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "docs/missing.md: no file docs/missing.md",
        "docs/other.md#nope: no heading with id #nope in docs/other.md",
        "#Title: no heading with id #Title in README.md",
    ]


@pytest.mark.parametrize("heading, want", [
    ("The losses", "the-losses"),
    ("`fusedgan demo`", "fusedgan-demo"),
    ("CPU, `ns` discriminator loss, fp32", "cpu-ns-discriminator-loss-fp32"),
    ("group_sumsq / group_scale_mul (gradient penalties)", "group_sumsq--group_scale_mul-gradient-penalties"),
    ("DistributedDataParallel: the penalty-only backward", "distributeddataparallel-the-penalty-only-backward"),
])
def test_slug_matches_github(heading, want):
    assert slug(heading) == want
