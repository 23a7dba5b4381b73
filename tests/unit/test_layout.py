"""The layout holds: each package imports only what its place allows, the pole's wheel
carries only pole code, no shipped module grows past a size a reader can hold, and every
Makefile target that is declared exists."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package → the project's packages it must never import
FORBIDDEN = {
    "contract": {"edge", "hub", "provisioning", "devkit", "firmware"},
    "drivers": {"edge", "hub", "provisioning", "devkit", "firmware"},
    "firmware": {"edge", "hub", "provisioning", "devkit"},
    "hub": {"edge", "provisioning", "devkit"},
    "provisioning": {"edge", "hub", "devkit"},
    "edge": {"hub", "provisioning", "devkit"},
}
SHIPPED = ["edge", "contract", "drivers", "firmware", "hub", "provisioning", "devkit"]
POLE = {"edge", "contract", "drivers", "firmware"}
MAX_LINES = 400


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """The top-level names of everything a module imports, lazily or not."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_its_place_allows(package: str) -> None:
    wrong = {f"{p.relative_to(ROOT)} imports {', '.join(sorted(imported(p) & FORBIDDEN[package]))}"
             for p in modules(package) if imported(p) & FORBIDDEN[package]}
    assert not wrong, "\n".join(sorted(wrong))


def test_no_shipped_module_is_over_400_lines_and_the_node_only_wires() -> None:
    long = [f"{p.relative_to(ROOT)}: {n} lines" for package in SHIPPED for p in modules(package)
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, long
    assert len((ROOT / "edge" / "node.py").read_text().splitlines()) <= 250


def test_the_pole_wheel_holds_the_pole_packages_and_nothing_else() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {name.split(".")[0] for name in include} == POLE
    deps = " ".join(project["project"]["dependencies"])
    assert "rich" not in deps  # the console library is the hub's and the dev-kit's


@pytest.mark.parametrize("package", ["hub", "provisioning", "devkit"])
def test_each_other_package_lists_every_folder_of_its_code(package: str) -> None:
    project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    folders = {".".join((package, *p.parent.relative_to(ROOT / package).parts))
               for p in (ROOT / package).rglob("__init__.py")}
    assert listed == folders
    assert project["project"]["scripts"], f"{package} has its own commands"


def test_every_declared_make_target_exists() -> None:
    text = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*?)(?<!\\)\n", text, re.M | re.S)[1]  # type: ignore[index]
                .replace("\\\n", " ").split())
    defined = set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))
    assert phony <= defined, sorted(phony - defined)
