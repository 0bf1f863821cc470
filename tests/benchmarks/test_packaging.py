"""The benchmarks folder is not part of the installed packages (cxr and its torch-free runtime)."""
from __future__ import annotations

import os
import runpy

import setuptools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_setup_installs_cxr_and_its_runtime_only(monkeypatch):
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(REPO)
    runpy.run_path(os.path.join(REPO, "setup.py"))
    packages = seen["packages"]
    assert "cxr" in packages and "cxr.data" in packages and "cxr.apps" in packages
    assert "cxr_runtime" in packages
    assert all(p.split(".")[0] in ("cxr", "cxr_runtime") for p in packages), packages
    assert os.path.isfile(os.path.join(REPO, "benchmarks", "__init__.py"))
    # the served app's page ships with the runtime
    assert "cxr_runtime.serve" in packages
    static = os.path.join(REPO, "cxr_runtime", "serve", "static")
    shipped = seen["package_data"]["cxr_runtime.serve"]
    assert shipped == ["static/*"] and {"index.html", "app.js", "app.css"} <= set(os.listdir(static))
