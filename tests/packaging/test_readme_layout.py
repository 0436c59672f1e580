"""The README's layout section matches the tree: every folder of the package is named there,
and every module it names exists (a rename that forgets the guide fails here)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def test_every_package_folder_is_in_the_readme_layout():
    layout = _layout()
    folders = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "memtune").rglob("*")
        if path.is_dir() and (path / "__init__.py").exists()
    )
    missing = [
        folder
        for folder in folders
        if f"{folder}/" not in layout and f"{Path(folder).name}/" not in layout
    ]
    assert not missing, f"folders the README's layout does not name: {missing}"


def test_every_module_the_readme_layout_names_exists():
    layout = _layout()
    modules = {path.name for top in ("memtune", "tests") for path in (ROOT / top).rglob("*.py")}
    named = set(re.findall(r"(?<![*\w])([a-z_]+\.py)\b", layout))
    assert named, "the layout names no module"
    assert not named - modules, f"modules the layout names that do not exist: {named - modules}"
