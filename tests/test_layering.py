"""The house's floors (README, Architecture): an import may only point down a floor, or within its own package."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "facegraph"

# Lowest first. A module of one floor may import modules of lower floors, and modules of its own package.
FLOORS = [
    {"errors"},
    {"data", "models", "graphs"},
    {"flops"},
    {"config"},
    {"paper"},
    {"rundir"},
    {"engine"},
    {"recognition"},
    {"analysis"},
    {"workflows"},
    {"api"},
    {"cli"},
    {"__main__", "__init__"},  # the package root re-exports the API (lazily, see facegraph/__init__.py)
]
FLOOR_OF = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def unit_of(module: str) -> str:
    """facegraph.engine.train -> engine; facegraph.paper -> paper; facegraph -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts).removesuffix(".__init__")
        found.append((name, path))
    return found


def imported_facegraph_modules(name: str, path: Path) -> list[tuple[int, str]]:
    """Every facegraph module `path` imports (at any depth: imports inside functions count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("facegraph")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == "facegraph":
                found += [(node.lineno, f"facegraph.{alias.name}") for alias in node.names]
            elif target.startswith("facegraph."):
                found.append((node.lineno, target))
    return found


def test_every_package_has_a_floor():
    units = {unit_of(name) for name, _ in modules()}
    assert units <= set(FLOOR_OF), f"give these a floor in FLOORS and README: {sorted(units - set(FLOOR_OF))}"


def violations() -> list[str]:
    found = []
    for name, path in modules():
        unit = unit_of(name)
        for line, target in imported_facegraph_modules(name, path):
            target_unit = unit_of(target)
            if target_unit not in FLOOR_OF or target_unit == unit:
                continue
            if FLOOR_OF[target_unit] >= FLOOR_OF[unit]:
                found.append(f"{path.relative_to(PACKAGE)}:{line} ({unit}) imports {target} ({target_unit})")
    return found


def test_imports_point_down_a_floor():
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The rule has teeth: a models module importing the engine is reported."""
    fake = tmp_path / "facegraph"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "bad.py").write_text("from facegraph.engine.train import train\nimport facegraph.cli\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert [v.split(" imports ")[1] for v in violations()] == ["facegraph.engine.train (engine)", "facegraph.cli (cli)"]


@pytest.mark.parametrize("unit", ["models", "graphs", "data"])
def test_the_core_knows_nothing_of_the_floors_above(unit):
    above = {u for u in FLOOR_OF if FLOOR_OF[u] > FLOOR_OF[unit]}
    for name, path in modules():
        if unit_of(name) == unit:
            assert not {unit_of(t) for _, t in imported_facegraph_modules(name, path)} & above, name
