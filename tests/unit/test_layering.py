"""Arrows point down only: ``core`` <- ``datasets`` <- ``methods`` <- ``bench``.

Each import runs in a fresh interpreter, so nothing another test imported can hide a
dependency."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_after(statement: str) -> set[str]:
    code = (f"import sys; {statement}; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.mark.parametrize("statement, forbidden", [
    ("import core, core.registry, core.atomic", {"bench", "methods", "datasets"}),
    ("import datasets", {"bench", "methods"}),
    ("import methods, datasets", {"bench"}),
])
def test_lower_layers_never_import_upper_ones(statement, forbidden):
    loaded = imported_after(statement)
    assert not loaded & forbidden, f"{statement!r} imported {sorted(loaded & forbidden)}"


# ------------------------------------------------------------------------ bench's areas
# Inside bench/, arrows point down too (README, "Layout"): what a run is and shares (common)
# <- the files it leaves (store) <- one run (run) <- many runs, tuning, cost, trained models;
# the report reads files only; the command line sits on top. Function-level imports count:
# a deferred import is still an arrow.
AREA_IMPORTS = {
    "common": set(),
    "store": {"common"},
    "run": {"common", "store"},
    "sweep": {"common", "store", "run"},
    "tune": {"common", "store", "run", "sweep"},
    "cost": {"common", "store", "run"},
    "api": {"common", "store", "run"},
    "report": {"common", "store"},
    "theory": {"report"},
    "commands": {"common", "store", "run", "sweep", "tune", "cost", "api", "report", "theory"},
}
PACKAGE_DATA = {"reference"}  # bench/reference: the paper's numbers, readable from anywhere


def bench_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((REPO / "bench").rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def bench_imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """Every bench module ``path`` imports (at the top or inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            targets = [n if n in modules else node.module for n in names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != "bench":
                found.append((target, node.lineno))
    return found


def area_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in PACKAGE_DATA) else None


def test_every_bench_module_lives_in_an_area():
    loose = [m for m in bench_modules() if area_of(m) is None
             and m not in ("bench", "bench.__main__") and m.split(".")[1] not in AREA_IMPORTS]
    assert not loose, f"modules outside bench's areas: {loose}"


def test_areas_import_only_the_areas_below_them():
    modules = bench_modules()
    upward = []
    for module, path in modules.items():
        area = area_of(module)
        for target, line in bench_imports(path, modules):
            to = area_of(target)
            if area and to and to != area and to not in PACKAGE_DATA \
                    and to not in AREA_IMPORTS[area]:
                upward.append(f"{path.relative_to(REPO)}:{line}: {module} -> {target}")
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_no_import_cycles_in_bench():
    modules = bench_modules()
    graph = {m: {t for t, _ in bench_imports(p, modules)} - {m} for m, p in modules.items()}
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]
