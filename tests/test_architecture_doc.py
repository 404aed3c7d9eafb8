"""docs/architecture.md cannot fall behind the code: its layout lists every module under
`mirrorspec/` exactly once (`- `path` — what it holds`), lists none that does not exist, and
every repository path the docs cite (`mirrorspec/...`, `tests/...`) is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
# One layout line: "- `mirrorspec/<path>.py` — <what it holds>".
ENTRY = re.compile(r"^- `(mirrorspec/[^`]+\.py)` — \S", re.MULTILINE)
CITED = re.compile(r"`((?:mirrorspec|tests)/[A-Za-z0-9_./-]+)")


def modules() -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in (ROOT / "mirrorspec").rglob("*.py")}


def test_every_module_is_listed_exactly_once() -> None:
    listed = ENTRY.findall(ARCHITECTURE.read_text(encoding="utf-8"))

    assert sorted({m for m in listed if listed.count(m) > 1}) == [], "listed more than once"
    missing = sorted(modules() - set(listed))
    assert missing == [], "add a line `- `<path>` — what it holds` for each to docs/architecture.md"
    gone = sorted(set(listed) - modules())
    assert gone == [], "these modules no longer exist: remove or rename their lines"


def test_every_path_the_docs_cite_exists() -> None:
    cited = {
        (doc.name, path.rstrip("/."))
        for doc in DOCS.glob("*.md")
        for path in CITED.findall(doc.read_text(encoding="utf-8"))
    }
    assert cited, "the docs cite no path: the pattern is broken"
    assert sorted((doc, path) for doc, path in cited if not (ROOT / path).exists()) == []
