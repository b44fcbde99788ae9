"""The README points into the manual: its links resolve, and the manual's navigation lists every page.

`mkdocs build --strict` (CI, `nox -s docs`) checks the links inside docs/; these checks cover the README,
which mkdocs does not read, and pages left out of the navigation, which mkdocs only mentions.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent


def nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_relative_link_and_image_of_the_readme_exists():
    text = (PROJECT / "README.md").read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert targets, "the README links to no page of the manual"
    assert [t for t in targets if not (PROJECT / t).exists()] == []


def test_the_navigation_lists_every_page_of_docs_and_nothing_else():
    config = yaml.safe_load((PROJECT / "mkdocs.yml").read_text())
    listed = sorted(nav_pages(config["nav"]))
    assert listed == sorted(p.name for p in (PROJECT / "docs").glob("*.md"))
