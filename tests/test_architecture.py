"""Arrows point one way (DESIGN.md §2): the apps depend on storage, never on each other;
storage and processing never import Starlette; only exhibit/ imports the apps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN: dict[str, set[str]] = {
    "storage": {"upload_api", "reviewer_ui", "processing", "exhibit", "starlette", "uvicorn"},
    "processing": {"upload_api", "reviewer_ui", "exhibit", "starlette", "uvicorn"},
    "upload_api": {"reviewer_ui", "processing", "exhibit"},
    "reviewer_ui": {"upload_api", "processing", "exhibit"},
}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add((alias.name.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations(package: str, forbidden: set[str], root: Path = ROOT) -> list[str]:
    out = []
    for path in sorted((root / package).rglob("*.py")):
        for name, line in sorted(imported_roots(path)):
            if name in forbidden:
                out.append(f"{path.relative_to(root)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_toward_storage_only(package: str) -> None:
    assert violations(package, FORBIDDEN[package]) == []


def test_checker_catches_a_wrong_arrow(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "bad.py").write_text("from starlette.responses import Response\nimport upload_api.app\n")
    found = violations("storage", FORBIDDEN["storage"], root=tmp_path)
    assert found == ["storage/bad.py:1 imports starlette", "storage/bad.py:2 imports upload_api"]
