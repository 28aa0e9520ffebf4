"""The layers of docs/architecture.md, checked on the source: every module imports, no import
circle, and arrows only point down (pages -> ui -> distill_core; jobs -> engine -> methods,
models, data -> registry; measure never imports the engine, and the engine reaches measure only
through measure/hook.py)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    files = [*(ROOT / "distill_core").rglob("*.py"), *(ROOT / "ui").rglob("*.py"), *(ROOT / "pages").glob("*.py"),
             ROOT / "app.py"]
    return {module_name(p): p for p in files if p.name != "__main__.py"}


def imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """Modules `name` imports (absolute names): at module level only, or anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from . import x` may name a module
    return out


MODULES = sources()


def graph() -> dict[str, set[str]]:
    """Module-level import edges between our modules. A registry package's entries register
    themselves with it (`from . import register` in methods/kd.py, which methods/__init__.py
    imports after defining `register`): an edge from a module to its own package is that idiom,
    not a circle, and is left out."""
    edges = {}
    for name, path in MODULES.items():
        targets = {t for t in imports(name, path, top_level_only=True) if t in MODULES and t != name}
        edges[name] = {t for t in targets if not name.startswith(t + ".")}
    return edges


def test_every_module_imports():
    for name in MODULES:
        if name.startswith(("distill_core", "ui")):
            importlib.import_module(name)


def test_no_import_circles():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


# (modules, prefixes they must not import, why)
RULES = [
    ("distill_core", ("streamlit", "pages", "ui"), "the library never imports the dashboard"),
    ("ui", ("pages",), "pages use ui, not the other way round"),
    ("distill_core.measure", ("distill_core.engine", "distill_core.jobs", "distill_core.teachers", "distill_core.config"),
     "measurement is below the engine"),
    ("distill_core.engine", ("distill_core.jobs", "distill_core.config"), "the engine is below jobs and takes typed runs"),
    ("distill_core.teachers", ("distill_core.jobs", "distill_core.config"), "teachers are part of the engine layer"),
    ("distill_core.config", ("distill_core.engine", "distill_core.teachers", "distill_core.jobs", "distill_core.measure"),
     "config expands experiments from the registries, below the engine"),
    *[(low, ("distill_core.config", "distill_core.engine", "distill_core.teachers", "distill_core.jobs", "distill_core.measure"),
       "registries and plain data are the bottom layer")
      for low in ("distill_core.registry", "distill_core.methods", "distill_core.models", "distill_core.data",
                  "distill_core.run_config", "distill_core.train_params", "distill_core.paths", "distill_core.files",
                  "distill_core.constants", "distill_core.errors", "distill_core.labels", "distill_core.evaluate",
                  "distill_core.onnx_files", "distill_core.outputs_files")],
]


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("owner, forbidden, why", RULES, ids=[r[0] for r in RULES])
def test_arrows_point_down(owner, forbidden, why):
    bad = [(name, t) for name, path in MODULES.items() if within(name, owner)
           for t in sorted(imports(name, path, top_level_only=False)) if any(within(t, f) for f in forbidden)]
    assert bad == [], f"{why}: " + ", ".join(f"{a} imports {b}" for a, b in bad)


def test_engine_reaches_measure_through_its_one_seam():
    used = {t for name, path in MODULES.items() if within(name, "distill_core.engine")
            for t in imports(name, path, top_level_only=False) if within(t, "distill_core.measure")}
    assert used <= {"distill_core.measure.hook", "distill_core.measure.hook.RunMeasurement"}, used


def test_pages_hold_only_pages_and_stay_short():
    assert sorted(p.name for p in (ROOT / "pages").iterdir() if p.suffix == ".py") == \
        sorted(Path(p).name for p in ("home.py", "new_experiment.py", "runs.py", "run_detail.py", "compare.py",
                                      "learn.py", "settings.py", "search.py"))
    for path in [*(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 300, f"{path.relative_to(ROOT)} has {lines} lines"
    for name, path in MODULES.items():  # a page is a script: other pages import nothing from it
        if within(name, "pages") or within(name, "ui"):
            assert not [t for t in imports(name, path, top_level_only=False) if within(t, "pages")], name
