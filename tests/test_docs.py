"""The docs a newcomer reads first stay short, name every top-level folder, and link only to what exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_markdown() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return [REPO_ROOT / line for line in listed.stdout.split()]


def test_readme_and_model_card_sizes():
    assert (REPO_ROOT / "README.md").stat().st_size <= 10_000
    assert (REPO_ROOT / "models" / "default" / "README.md").stat().st_size <= 8_000


def test_readme_names_every_top_level_folder():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    folders = {line.split("/")[0] for line in listed.stdout.split() if "/" in line and not line.startswith(".")}
    missing = sorted(f for f in folders if f"`{f}/`" not in readme)
    assert not missing, f"README.md's layout table lacks {missing}"


def test_relative_links_resolve():
    broken = []
    for page in tracked_markdown():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO_ROOT)} → {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)
