#!/usr/bin/env python
"""Install detectron2 v0.6's Python package from the PyPI source release ``pb1-detectron2==0.6``.

Why: detectron2 publishes no wheels, and the only copy on the package registries is the source
release ``pb1-detectron2==0.6``, whose ``detectron2/`` package is byte-identical to upstream v0.6
but whose C++/CUDA sources are missing, so ``pip install pb1-detectron2`` fails at the compile
step. This script downloads that archive from the package index, verifies its sha256, and packs
its pure-Python ``detectron2/`` package into a wheel named ``detectron2-0.6`` that pip installs.
Nothing is compiled; :mod:`cxr.compat` supplies the missing ``detectron2._C`` stand-in. The
wheel goes in with ``--no-deps`` (so that a reinstall never replaces pinned packages); detectron2's
own runtime dependencies (:data:`REQUIRES`: cloudpickle, fvcore, iopath, ...) are then installed
by a second ``pip install``, held to ``requirements.txt``'s pins when run from a cxr checkout.

Usage::

    python tools/install_detectron2.py            # into the running interpreter's environment
    python tools/install_detectron2.py --force    # reinstall even if detectron2 0.6 is present

Users with GitHub access can install upstream instead (see README); cxr works with either.
"""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile

SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
VERSION = "0.6"
DEFAULT_INDEX = "https://pypi.org/simple"
# detectron2 v0.6's own install_requires, minus the ones its setup.py only needs to compile.
REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore<0.1.6,>=0.1.5",
    "iopath<0.1.10,>=0.1.7",
    "omegaconf>=2.1",
    # imported by detectron2 at module level but left to the user by its setup.py
    "opencv-python-headless",
]


REQUIREMENTS_TXT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "requirements.txt"
)


def pip_commands(wheel: str, constraints: str | None = REQUIREMENTS_TXT) -> list[list[str]]:
    """The two pip runs: the wheel alone (``--no-deps``), then detectron2's dependencies
    (:data:`REQUIRES`, constrained to ``constraints`` when that file exists)."""
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    deps = pip + list(REQUIRES)
    if constraints and os.path.isfile(constraints):
        deps += ["-c", constraints]
    return [pip + ["--no-deps", "--force-reinstall", wheel], deps]


def installed_version() -> str | None:
    try:
        return importlib.metadata.version("detectron2")
    except importlib.metadata.PackageNotFoundError:
        return None


def find_sdist_url(index: str) -> str:
    """Return the download URL of the sdist listed on the PEP 503 simple index page."""
    page_url = index.rstrip("/") + "/pb1-detectron2/"
    with urllib.request.urlopen(page_url, timeout=60) as resp:
        html = resp.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', html):
        if href.split("#")[0].endswith("/" + SDIST_NAME):
            return urllib.parse.urljoin(page_url, href.split("#")[0])
    raise SystemExit(f"install_detectron2: {SDIST_NAME} not listed on {page_url}")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=300) as resp:
        return resp.read()


def build_wheel(sdist: bytes, out_dir: str) -> str:
    """Pack the sdist's ``detectron2/`` package into a pure-Python wheel; returns its path."""
    wheel_path = os.path.join(out_dir, f"detectron2-{VERSION}-py3-none-any.whl")
    dist_info = f"detectron2-{VERSION}.dist-info"
    record: list[tuple[str, str, str]] = []

    def add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
        zf.writestr(arcname, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append((arcname, f"sha256={digest}", str(len(data))))

    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tar, zipfile.ZipFile(
        wheel_path, "w", zipfile.ZIP_DEFLATED
    ) as zf:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) != 2 or not member.isfile():
                continue
            rel = parts[1]
            if not rel.startswith("detectron2/") or "/csrc/" in rel or ".." in rel.split("/"):
                continue
            add(zf, rel, tar.extractfile(member).read())
        metadata = [
            "Metadata-Version: 2.1",
            "Name: detectron2",
            f"Version: {VERSION}",
            "Summary: Detectron2 v0.6 Python package (from pb1-detectron2==0.6, no compiled ops)",
            "Home-page: https://github.com/facebookresearch/detectron2",
            "License: Apache-2.0",
            "Requires-Python: >=3.6",
        ] + [f"Requires-Dist: {r}" for r in REQUIRES]
        add(zf, f"{dist_info}/METADATA", ("\n".join(metadata) + "\n").encode())
        wheel_meta = "Wheel-Version: 1.0\nGenerator: cxr-install-detectron2\n"
        wheel_meta += "Root-Is-Purelib: true\nTag: py3-none-any\n"
        add(zf, f"{dist_info}/WHEEL", wheel_meta.encode())
        add(zf, f"{dist_info}/top_level.txt", b"detectron2\n")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerows(record)
        writer.writerow((f"{dist_info}/RECORD", "", ""))
        zf.writestr(f"{dist_info}/RECORD", buf.getvalue())
    return wheel_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if 0.6 is present")
    parser.add_argument("--sdist", help="use this local copy of the archive instead of fetching")
    parser.add_argument(
        "--index-url", default=os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX), help="PEP 503 index"
    )
    args = parser.parse_args(argv)

    current = installed_version()
    if current is not None and not args.force:
        print(
            f"install_detectron2: detectron2 {current} already installed; checking its dependencies"
        )
        subprocess.run(pip_commands("")[1], check=True)
        return 0

    if args.sdist:
        with open(args.sdist, "rb") as f:
            data = f.read()
    else:
        url = find_sdist_url(args.index_url)
        print(f"install_detectron2: downloading {url}")
        data = fetch(url)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(
            f"install_detectron2: sha256 mismatch for {SDIST_NAME}: got {digest}, "
            f"expected {SDIST_SHA256}; refusing to install"
        )
    print(f"install_detectron2: sha256 verified ({digest})")
    with tempfile.TemporaryDirectory() as tmp:
        for cmd in pip_commands(build_wheel(data, tmp)):
            subprocess.run(cmd, check=True)
    print(f"install_detectron2: installed detectron2 {installed_version()}")
    return 0


if __name__ == "__main__":

    sys.exit(main())
