"""The modules stand in the order ARCHITECTURE.md lists them: each imports only those above."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "streamvis"


def listed() -> dict[str, int]:
    """Each module's place in ARCHITECTURE.md's table of modules (a row may name several)."""
    rank: dict[str, int] = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        if line.startswith("| `"):
            for name in re.findall(r"`([^`]+\.py)`", line.split("|")[1]):
                rank.setdefault(name, len(rank))
    return rank


def imported(path: Path) -> set[str]:
    """The package's modules that ``path`` imports (relative imports: the package's own)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        targets = (
            [base / f"{node.module.replace('.', '/')}.py"]
            if node.module
            else [base / f"{alias.name}.py" for alias in node.names]
        )
        found |= {str(t.relative_to(PACKAGE)) for t in targets if t.exists()}
    return found


def test_every_module_is_listed_and_imports_only_modules_above_it() -> None:
    rank = listed()
    modules = [p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    unlisted = sorted(str(p.relative_to(PACKAGE)) for p in modules)
    assert [m for m in unlisted if m not in rank] == []
    upward = [
        (name, other)
        for path in modules
        for name in [str(path.relative_to(PACKAGE))]
        for other in sorted(imported(path))
        if other in rank and rank[other] >= rank[name] and other != name
    ]
    assert upward == []


def test_no_module_is_much_longer_than_one_sitting() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert long == {}
