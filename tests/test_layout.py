"""Package layout rules, by AST scan of every module of cxr/ and cxr_runtime/: imports point
downward only, the runtime imports neither torch, detectron2 nor cxr, and no function is longer
than a reader can hold."""

import ast
import os
import sys

import cxr

ROOT = os.path.dirname(os.path.abspath(cxr.__file__))
RUNTIME_ROOT = os.path.join(os.path.dirname(ROOT), "cxr_runtime")

#: area -> areas it must never import
FORBIDDEN = {
    "data": {"engine", "apps"},
    "modeling": {"engine", "apps"},
    "evaluation": {"engine", "apps"},
    "engine": {"apps"},
}


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


def _modules(area: str):
    for root, _, files in os.walk(os.path.join(ROOT, area)):
        for f in files:
            if f.endswith(".py"):
                yield os.path.join(root, f)


def test_imports_point_downward():
    bad = []
    for area, forbidden in FORBIDDEN.items():
        for path in _modules(area):
            for imported, line in _imported_areas(path, _package(path)):
                if imported in forbidden:
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
