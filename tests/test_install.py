"""What ``pip install .`` brings: every third-party module that cxr and cxr_runtime import (AST
scan, function bodies included) is a requirement of ``setup.py`` or one of its extras; modules of
an extra are imported only through ``import_optional`` (so a missing one names its extra); every
requirement is pinned; and the documented commands, with an optional package missing, stop with
the ``pip install`` line to run.

The module -> distribution mapping is the installed environment's own
(``importlib.metadata.packages_distributions``), not a table kept here.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import os
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest
import setuptools
from cxr_runtime.optional import OPTIONAL_PACKAGES, install_hint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_PARTY = {"cxr", "cxr_runtime"}
# Not on the package index as a wheel: installed by tools/install_detectron2.py, and `import cxr`
# says so when it is missing (test below).
INSTALLED_BY_SCRIPT = {"detectron2"}
# Subpackages that exist for one extra: their modules import that extra's packages directly,
# because their entry point imports each of them through import_optional first (test below).
EXTRA_SUBPACKAGES = {os.path.join("cxr_runtime", "serve") + os.sep: "serve"}


def _norm(dist: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])


@pytest.fixture(scope="module")
def setup_kwargs():
    seen = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    mp.chdir(REPO)
    try:
        runpy.run_path(os.path.join(REPO, "setup.py"))
    finally:
        mp.undo()
    return seen


def _imports(path: str) -> list[tuple[str, int, str]]:
    """``(top-level module, line, how)`` of each absolute import in the file; ``how`` is
    ``"import"`` for import statements and ``"optional"`` for ``import_optional("x", ...)``."""
    out = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], node.lineno, "import") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module.split(".")[0], node.lineno, "import"))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) == "import_optional"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            out.append((node.args[0].value.split(".")[0], node.lineno, "optional"))
    return out


def _package_imports() -> dict[str, list[tuple[str, str]]]:
    """Third-party top-level module -> [(file:line, how)] over cxr/ and cxr_runtime/."""
    found: dict[str, list[tuple[str, str]]] = {}
    for pkg in sorted(FIRST_PARTY):
        for dirpath, _, files in os.walk(os.path.join(REPO, pkg)):
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(dirpath, name)
                for mod, line, how in _imports(path):
                    if mod in sys.stdlib_module_names or mod in FIRST_PARTY or mod == "__future__":
                        continue
                    where = f"{os.path.relpath(path, REPO)}:{line}"
                    found.setdefault(mod, []).append((where, how))
    return found


@functools.lru_cache(maxsize=None)
def _module_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str:
    """The installed distribution providing ``module``; for an optional package that is not
    installed here, the one its table names."""
    dists = _module_distributions().get(module)
    if not dists and module in OPTIONAL_PACKAGES:
        return _norm(OPTIONAL_PACKAGES[module][0])
    assert dists, f"{module} is imported by cxr but no installed distribution provides it"
    return _norm(dists[0])


def test_every_imported_module_is_a_requirement_or_an_extra(setup_kwargs):
    required = {_req_name(r) for r in setup_kwargs["install_requires"]}
    extras: dict[str, set[str]] = {}
    for extra, reqs in setup_kwargs["extras_require"].items():
        for r in reqs:
            extras.setdefault(_req_name(r), set()).add(extra)
    found = _package_imports()
    # the scan sees imports inside functions and import_optional calls too
    assert {"torch", "ensemble_boxes", "sklearn", "onnx", "onnxruntime"} <= set(found)
    missing = []
    for mod, sites in sorted(found.items()):
        if mod in INSTALLED_BY_SCRIPT:
            continue
        dist = _distribution(mod)
        if dist in required:
            continue
        if dist not in extras:
            missing.append(f"{mod} ({dist}) at {sites[0][0]}")
            continue
        plain = [
            w for w, how in sites if how == "import" and not _in_extra_subpackage(w, extras[dist])
        ]
        assert not plain, (
            f"{mod} belongs to the extra(s) {sorted(extras[dist])} but is imported directly at "
            f"{plain}: use cxr_runtime.optional.import_optional so a missing package names its extra"
        )
        dist_of_table, extra_of_table = OPTIONAL_PACKAGES[mod]
        assert _norm(dist_of_table) == dist and extra_of_table in extras[dist], mod
    assert not missing, f"imported, but in neither install_requires nor an extra: {missing}"


def _in_extra_subpackage(where: str, extras: set[str]) -> bool:
    return any(where.startswith(p) and e in extras for p, e in EXTRA_SUBPACKAGES.items())


def test_serve_entry_point_imports_the_serve_extra_through_import_optional(tmp_path):
    from cxr_runtime.serve.cli import SERVE_MODULES

    scanned = {m for m, _, how in _imports(os.path.join(REPO, "cxr_runtime", "serve", "cli.py"))
               if how == "optional"}  # fmt: skip
    serve_dir = os.path.join(REPO, "cxr_runtime", "serve")
    direct = set()
    for name in os.listdir(serve_dir):
        if name.endswith(".py"):
            direct |= {m for m, _, how in _imports(os.path.join(serve_dir, name))
                       if how == "import" and m in OPTIONAL_PACKAGES}  # fmt: skip
    assert direct and direct <= set(SERVE_MODULES) and "uvicorn" in scanned
    r = _run_blocked(["fastapi"], f"import runpy, sys\nsys.argv = ['serve.py', '--checkpoint', "
                     f"'m.onnx']\nrunpy.run_path({os.path.join(REPO, 'tools', 'serve.py')!r}, "
                     "run_name='__main__')\n", str(tmp_path))  # fmt: skip
    assert r.returncode != 0 and "cxr[serve]" in r.stderr and "fastapi" in r.stderr, r.stderr[
        -2000:
    ]


def test_optional_table_matches_the_extras(setup_kwargs):
    extras = setup_kwargs["extras_require"]
    for mod, (dist, extra) in OPTIONAL_PACKAGES.items():
        assert dist in extras[extra], f"{mod}: {dist} is not in cxr[{extra}]"
        assert _norm(dist) not in {_req_name(r) for r in setup_kwargs["install_requires"]}
        assert f"cxr[{extra}]" in install_hint(mod) and dist in install_hint(mod)
    assert set(extras["all"]) == {r for k, v in extras.items() if k != "all" for r in v}
    # detectron2's own runtime dependencies come with cxr, not only with install_detectron2.py
    d2 = runpy.run_path(os.path.join(REPO, "tools", "install_detectron2.py"), run_name="d2")
    required = {_req_name(r) for r in setup_kwargs["install_requires"]}
    assert {_req_name(r) for r in d2["REQUIRES"]} <= required


def test_every_requirement_is_pinned(setup_kwargs):
    pins = {}
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in open(os.path.join(REPO, name), encoding="utf-8"):
            m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
            if m:
                pins[_norm(m.group(1))] = m.group(2)
    reqs = list(setup_kwargs["install_requires"])
    reqs += [r for extra, rs in setup_kwargs["extras_require"].items() for r in rs]
    unpinned = sorted({_req_name(r) for r in reqs} - set(pins))
    assert not unpinned, f"requirements without a tested pin in requirements*.txt: {unpinned}"


def test_install_detectron2_then_installs_detectron2s_dependencies(tmp_path):
    d2 = runpy.run_path(os.path.join(REPO, "tools", "install_detectron2.py"), run_name="d2")
    wheel, deps = d2["pip_commands"]("d2.whl")
    assert wheel[-3:] == ["--no-deps", "--force-reinstall", "d2.whl"]
    assert "--no-deps" not in deps and set(d2["REQUIRES"]) <= set(deps)
    assert deps[-2:] == ["-c", os.path.join(REPO, "requirements.txt")]
    assert "-c" not in d2["pip_commands"]("d2.whl", str(tmp_path / "absent.txt"))[1]


def _module_level_imports(path: str) -> set[str]:
    """Top-level names imported unconditionally at module level (not in a function, ``try`` or
    ``if``) by the file at ``path``."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _requirement_closure(reqs: list[str]) -> set[str]:
    """Distributions that installing ``reqs`` brings: them and, recursively, their own
    requirements (installed metadata; extras not followed)."""
    seen: set[str] = set()
    stack = [_req_name(r) for r in reqs]
    while stack:
        dist = stack.pop()
        if dist not in seen:
            seen.add(dist)
            try:
                sub = importlib.metadata.requires(dist) or []
            except importlib.metadata.PackageNotFoundError:
                continue
            stack += [_req_name(r) for r in sub if "extra ==" not in r]
    return seen


def test_detectron2s_unconditional_imports_come_with_cxr(setup_kwargs):
    # The detectron2 modules `import cxr` loads, read by AST: each module-level import of a
    # third-party package is in install_requires, and brought by tools/install_detectron2.py's
    # REQUIRES (directly or as their requirement), so both install paths bring it.
    code = (
        "import json, sys\nimport cxr\n"
        "print(json.dumps(sorted({m.__file__ for n, m in list(sys.modules.items())\n"
        "    if n.split('.')[0] == 'detectron2' and getattr(m, '__file__', None)})))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    files = [f for f in json.loads(r.stdout.strip().splitlines()[-1]) if f.endswith(".py")]
    assert len(files) > 50
    imported = set().union(*map(_module_level_imports, files))
    third_party = sorted(
        m for m in imported if m not in sys.stdlib_module_names and m not in ("detectron2",)
    )
    assert {"torch", "fvcore", "cloudpickle"} <= set(third_party), third_party
    d2 = runpy.run_path(os.path.join(REPO, "tools", "install_detectron2.py"), run_name="d2")
    required = {_req_name(r) for r in setup_kwargs["install_requires"]}
    # torch, torchvision: detectron2 leaves them to the user (cxr requires them)
    declared = _requirement_closure(d2["REQUIRES"]) | {"torch", "torchvision"}
    for mod in third_party:
        dist = _distribution(mod)
        assert dist in required, f"detectron2 imports {mod} ({dist}): not in install_requires"
        assert dist in declared, f"detectron2 imports {mod} ({dist}): not brought by REQUIRES"


def _run_blocked(blocked: list[str], code: str, cwd: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which the ``blocked`` packages cannot be imported
    (``sys.modules[name] = None``, as if not installed)."""
    prelude = f"import sys\nfor _m in {blocked!r}:\n    sys.modules[_m] = None\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_import_cxr_without_detectron2_says_how_to_install_it(tmp_path):
    # Only the standard library and the repository on the path: detectron2 is absent for real.
    code = (
        f"sys.path[:] = [p for p in sys.path if 'site-packages' not in p] + [{REPO!r}]\n"
        "import cxr\n"
    )
    r = _run_blocked([], code, str(tmp_path))
    assert r.returncode != 0
    assert "tools/install_detectron2.py" in r.stderr and "detectron2 v0.6" in r.stderr, r.stderr


def _tiny_onnx_and_film(tmp_path) -> tuple[str, str]:
    import cv2
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = str(tmp_path / "model.onnx")
    onnx.save(helper.make_model(graph), model)
    os.makedirs(tmp_path / "films")
    film = str(tmp_path / "films" / "film.png")
    cv2.imwrite(film, np.full((32, 32), 100, np.uint8))
    return model, film


@pytest.mark.parametrize(
    "blocked,argv,extra",
    [
        (["onnxruntime"], ["tools/predict.py", "--backend", "onnxruntime"], "deploy"),
        (["openvino"], ["tools/predict.py", "--backend", "openvino"], "deploy"),
    ],
)
def test_predict_backend_without_its_package_names_the_extra(tmp_path, blocked, argv, extra):
    model, film = _tiny_onnx_and_film(tmp_path)
    argv = argv + ["--checkpoint", model, "--input", film, "--output", str(tmp_path / "out")]
    code = f"import runpy\nsys.argv = {argv!r}\nrunpy.run_path({argv[0]!r}, run_name='__main__')\n"
    r = _run_blocked(blocked, code, REPO)
    assert r.returncode != 0
    assert f"pip install {blocked[0]} (or the extra cxr[{extra}]" in r.stderr, r.stderr[-2000:]


def test_optional_steps_of_cxr_without_their_package_name_the_extra(tmp_path):
    # One interpreter (importing torch and detectron2 once) for both steps.
    code = (
        "from cxr.export.quantize import quantize_int8\n"  # tools/export.py --int8
        "from cxr.checkpoint.torchxrayvision import xrv_weights_file\n"  # convert_weights.py
        "for step in (lambda: quantize_int8('m.onnx', 'q.onnx'),\n"
        "             lambda: xrv_weights_file('densenet121-res224-all')):\n"
        "    try:\n"
        "        step()\n"
        "    except ImportError as e:\n"
        "        print('ImportError:', e)\n"
    )
    r = _run_blocked(["onnxruntime", "torchxrayvision"], code, str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2, r.stdout
    assert "--int8 needs the onnxruntime package" in lines[0]
    assert "pip install onnxruntime (or the extra cxr[deploy]: pip install '.[deploy]'" in lines[0]
    assert "pip install torchxrayvision (or the extra cxr[convert]" in lines[1]
    assert not os.listdir(tmp_path)  # nothing half-written


def test_a_broken_optional_package_is_not_reported_as_missing():
    from cxr_runtime.optional import import_optional

    pytest.importorskip("onnxruntime")  # installed (cxr[deploy]), but its own import fails

    # onnxruntime.quantization itself imports onnx: a missing onnx is that error, not "install
    # onnxruntime"
    code = (
        "from cxr_runtime.optional import import_optional\n"
        "import_optional('onnxruntime.quantization', 'x')\n"
    )
    r = _run_blocked(["onnx"], code, REPO)
    assert r.returncode != 0 and "cxr[deploy]" not in r.stderr and "onnx" in r.stderr
    with pytest.raises(KeyError, match="not an optional package"):
        import_optional("numpy", "x")
