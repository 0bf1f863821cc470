"""Package layout rules, by AST scan of every module of cxr/ and cxr_runtime/: imports point
downward only (every package and top-level module of cxr/ has a layer), no import cycle between
modules or packages (imports inside functions included), the runtime imports neither torch,
detectron2 nor cxr, and no function is longer than a reader can hold."""

import ast
import os
import sys

import cxr

ROOT = os.path.dirname(os.path.abspath(cxr.__file__))
RUNTIME_ROOT = os.path.join(os.path.dirname(ROOT), "cxr_runtime")

#: every package / top-level module of cxr/ -> its layer: an area imports only areas of lower
#: layers (areas of one layer never import each other), so imports point downward and no two
#: areas import each other. ``cxr/__init__.py`` (which imports every area to register it) is
#: the top.
LAYERS = {
    "compat": 0, "registry": 0, "fileio": 0, "torch_io": 0, "boxes": 0,
    "config": 1,
    "ensemble": 2,
    "data": 3, "modeling": 3,
    "evaluation": 4, "checkpoint": 4,
    "engine": 5,
    "apps": 6,
    "export": 7,
}  # fmt: skip


def _package(path: str) -> list[str]:
    """The dotted package of a module file of cxr/, as a list (``["cxr", "evaluation"]``)."""
    return ["cxr"] + os.path.relpath(path, ROOT).split(os.sep)[:-1]


def _imported_areas(path: str, package: list[str]) -> set[tuple[str, int]]:
    """``(cxr area, line)`` of every import of a ``cxr.<area>`` module in the file at ``path``
    of package ``package`` (absolute ``cxr.x`` and relative ``..x`` imports, at any depth:
    function bodies too)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        for n in names:
            parts = n.split(".")
            if parts[0] == "cxr" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def _areas() -> set[str]:
    """The packages and top-level modules of cxr/."""
    return {n[:-3] if n.endswith(".py") else n for n in os.listdir(ROOT)
            if n != "__init__.py" and not n.startswith((".", "_"))
            and (n.endswith(".py") or os.path.isfile(os.path.join(ROOT, n, "__init__.py")))}  # fmt: skip


def _modules(area: str):
    single = os.path.join(ROOT, area + ".py")
    if os.path.isfile(single):
        yield single
    for root, _, files in os.walk(os.path.join(ROOT, area)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(root, f)


def test_every_area_has_a_layer():
    assert _areas() == set(LAYERS), "give each package / top-level module of cxr/ a layer"


def test_imports_point_downward():
    bad = []
    for area in sorted(LAYERS):
        for path in _modules(area):
            for imported, line in _imported_areas(path, _package(path)):
                if imported != area and LAYERS.get(imported, 99) >= LAYERS[area]:
                    bad.append(f"{os.path.relpath(path, ROOT)}:{line} imports cxr.{imported}")
    assert not bad, "\n".join(bad)


def test_scanner_sees_relative_and_nested_imports(tmp_path):
    """The scan itself: imports inside a function, relative and absolute, are found."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import numpy\nfrom . import metrics\n"
        "def f():\n    from ..engine import Trainer\n    import cxr.apps.tools\n"
    )
    found = {a for a, _ in _imported_areas(str(probe), ["cxr", "evaluation"])}
    assert found == {"engine", "apps", "evaluation"}


def _module_name(path: str, top: str) -> str:
    """Dotted name of the module file ``path`` under the package folder ``top``."""
    parts = os.path.relpath(path, os.path.dirname(top))[: -len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(top: str) -> dict[str, set[str]]:
    """Module -> the modules of the package folder ``top`` it imports, at any depth (function
    bodies too), relative and absolute. ``from p import x`` imports ``p.x`` when that is a
    module, else ``p``. Importing a module also imports the packages above it (their
    ``__init__``), except the importer's own."""
    files = {_module_name(os.path.join(r, f), top): os.path.join(r, f)
             for r, _, fs in os.walk(top) for f in fs if f.endswith(".py")}  # fmt: skip
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        here = mod.split(".") if path.endswith("__init__.py") else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] if node.level else [])
                base = ".".join(filter(None, [base, node.module or ""]))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]  # fmt: skip
            else:
                continue
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                parts = t.split(".") if t else []
                for k in range(1, len(parts) + 1):
                    dep = ".".join(parts[:k])
                    if dep in files and not (mod + ".").startswith(dep + "."):
                        graph[mod].add(dep)
        graph[mod].discard(mod)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one
    module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    """No cycle between the modules of cxr/ (an ``__init__`` included), nor between its
    packages (the module graph with each module replaced by its package / top-level module;
    the registering root ``cxr/__init__.py`` left out)."""
    graph = import_graph(ROOT)
    assert len(graph) > 100 and "cxr.export.cli" in graph and "cxr.checkpoint" in graph
    assert not find_cycles(graph), find_cycles(graph)
    areas: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        if mod != "cxr":
            areas.setdefault(mod.split(".")[1], set()).update(
                d.split(".")[1] for d in deps if d != "cxr" and d.split(".")[1] != mod.split(".")[1]
            )
    assert set(areas) == set(LAYERS)
    assert not find_cycles(areas), find_cycles(areas)


def test_cycle_check_finds_cycles_through_functions_and_packages(tmp_path):
    """The checker itself, on a probe package: a cycle hidden in a function body, one through
    a package ``__init__``, and an acyclic chain that must not be reported."""
    top = tmp_path / "probe"
    for d in ("", "a", "b"):
        (top / d).mkdir(exist_ok=True)
        (top / d / "__init__.py").write_text("")
    (top / "a" / "__init__.py").write_text("from .x import f\n")
    (top / "a" / "x.py").write_text("def f():\n    from ..b import y\n")
    (top / "b" / "y.py").write_text("import probe.a.z\n")  # imports package a's __init__ too
    (top / "a" / "z.py").write_text("")
    (top / "c.py").write_text("from .d import g\n")
    (top / "d.py").write_text("def g():\n    from . import e\n")
    (top / "e.py").write_text("from . import c\n")
    (top / "f.py").write_text("from .a import z\n")
    graph = import_graph(str(top))
    assert "probe.a.z" in graph["probe.b.y"] and "probe.a" in graph["probe.b.y"]
    assert sorted(find_cycles(graph)) == [
        ["probe.a", "probe.a.x", "probe.b.y"],
        ["probe.c", "probe.d", "probe.e"],
    ]
    assert find_cycles({"m": {"n"}, "n": {"o"}, "o": set()}) == []


#: longest function body allowed in cxr/, in lines (def line to last line)
MAX_FUNCTION_LINES = 80


def _long_functions(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    return [
        f"{os.path.relpath(path, ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_over_80_lines():
    long = [hit for top in (ROOT, RUNTIME_ROOT) for root, _, files in os.walk(top)
            for f in sorted(files) if f.endswith(".py")
            for hit in _long_functions(os.path.join(root, f))]  # fmt: skip
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def test_long_function_scanner_counts_lines(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n" + "    x = 1\n" * 80 + "\n\ndef g():\n    return 2\n")
    assert [h.split()[1] for h in _long_functions(str(path))] == ["f"]


#: what cxr_runtime may import besides the standard library and itself: the deployable runtime
#: of exported models (no torch, no detectron2, no cxr)
RUNTIME_ALLOWED = {
    "cxr_runtime", "numpy", "cv2", "PIL", "pydicom", "onnxruntime", "openvino", "tqdm"
}  # fmt: skip


def _absolute_imports(path: str) -> set[tuple[str, int]]:
    """``(top-level module, line)`` of every absolute import in the file, at any depth."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            found |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.add(((node.module or "").split(".")[0], node.lineno))
    return found


#: what the served app (cxr_runtime/serve/) may import besides RUNTIME_ALLOWED: its web stack
SERVE_ALLOWED = {"fastapi", "starlette", "pydantic", "uvicorn", "python_multipart"}


def _runtime_violations(top: str) -> list[str]:
    std = set(sys.stdlib_module_names)
    return [f"{os.path.relpath(os.path.join(root, f), top)}:{line} imports {mod}"
            for root, _, files in os.walk(top) for f in sorted(files) if f.endswith(".py")
            for mod, line in sorted(_absolute_imports(os.path.join(root, f)))
            if mod not in std | RUNTIME_ALLOWED
            | (SERVE_ALLOWED if os.path.basename(root) == "serve" else set())]  # fmt: skip


def test_runtime_imports_only_its_dependencies():
    assert os.path.isfile(os.path.join(RUNTIME_ROOT, "predict.py"))
    assert os.path.isfile(os.path.join(RUNTIME_ROOT, "serve", "app.py"))
    bad = _runtime_violations(RUNTIME_ROOT)
    assert not bad, "\n".join(bad)


def test_runtime_scanner_flags_torch_detectron2_and_cxr(tmp_path):
    (tmp_path / "m.py").write_text(
        "import os, numpy\nfrom . import io\nfrom PIL import Image\n"
        "def f():\n    import torch.nn\n    from detectron2.structures import Boxes\n"
        "    from cxr.data import io\n"
    )
    assert sorted(b.split()[-1] for b in _runtime_violations(str(tmp_path))) == [
        "cxr",
        "detectron2",
        "torch",
    ]
    # the web stack only inside serve/
    (tmp_path / "m.py").write_text("import fastapi\n")
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "app.py").write_text("import fastapi\nimport torch\n")
    assert sorted(_runtime_violations(str(tmp_path))) == ["m.py:1 imports fastapi",
                                                         "serve/app.py:2 imports torch"]  # fmt: skip
