"""README's Layout map stays true: every module of src/ferkit is on it, and every entry on
it exists (a folder entry `x/` covers its files, `models/*.py` its pattern)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ferkit"


def _entries() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    return [line.split()[0] for line in block.splitlines() if line and not line[0].isspace()]


def _covered(module: str, entries: list[str]) -> bool:
    return any(
        module.startswith(entry) if entry.endswith("/") else fnmatch.fnmatch(module, entry)
        for entry in entries
    )


def test_the_readme_layout_map_names_every_module_and_nothing_else():
    entries = _entries()
    assert len(entries) > 20
    missing = [e for e in entries if not list(PACKAGE.glob(e.rstrip("/")))]
    assert missing == [], f"on README's Layout map but not in src/ferkit: {missing}"
    modules = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent == PACKAGE
    ]
    unmapped = sorted(m for m in modules if not _covered(m, entries))
    assert unmapped == [], f"modules missing from README's Layout map: {unmapped}"
