"""A document that sends the reader to a section ("X" above / below, or FILE.md, "X") names a
section that is there. Before: clients/python/README.md sent readers to the repository README's
section "Python SDK and the `faceapi` command line", and docs/API.md to that section "above"; it
lives in clients/python/README.md, and neither place had it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "PERFORMANCE.md",
    ROOT / "clients/python/README.md",
    *sorted(ROOT.glob("docs/*.md")),
]
SAME_FILE = re.compile(r'"([^"\n]{4,80})" (?:above|below)|[Tt]he section "([^"\n]{4,80})"')
OTHER_FILE = re.compile(
    r'((?:docs/)?[A-Z]+\.md|clients/python/README\.md|repository\'s README), (?:section )?"([^"\n]{4,80})"'
)


def _has_section(document: Path, title: str) -> bool:
    """A heading that says it (a heading may go on: "Several machines: workers on other hosts")."""
    headings = (line.lstrip("#").lower() for line in document.read_text().splitlines() if line.startswith("#"))
    return any(title.lower() in heading for heading in headings)


def _named(document: Path, file: str) -> Path:
    file = "README.md" if file == "repository's README" else file
    for candidate in (ROOT / file, document.parent / file, ROOT / "docs" / file):
        if candidate.exists():
            return candidate
    raise AssertionError(f"{document.relative_to(ROOT)} names {file}, which does not exist")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_section_a_document_points_to_exists(document):
    text = document.read_text()
    for found in SAME_FILE.finditer(text):
        title = found.group(1) or found.group(2)
        assert _has_section(document, title), f'{document.relative_to(ROOT)}: no section "{title}" in it'
    for found in OTHER_FILE.finditer(text):
        file, title = found.groups()
        assert _has_section(_named(document, file), title), (
            f'{document.relative_to(ROOT)}: no section "{title}" in {file}'
        )
