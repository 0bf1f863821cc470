"""The documentation names only what exists: every repository path, file, module and heading
anchor named in README.md, CONTRIBUTING.md and docs/*.md; and timing tables (a column of ms,
wall time, CPU s, images/s, ...) live in docs/benchmarks.md only, which other pages link to.

What is checked, per page:

- markdown links and images ``[text](target)`` that are not URLs: the file (relative to the page)
  exists, and a ``#anchor`` names a heading of the target page (GitHub's heading slugs);
- repository paths in backticks and in fenced code blocks: a token whose first component is a top-level entry of the
  repository (``cxr/``, ``tools/``, ``configs/``, ``datasets/``, ``docs/``, ``setup.py``, ...)
  names an existing file or folder, unless it lies under a folder that commands create
  (:data:`GENERATED`) or holds a placeholder (``<area>``, ``*``, ``CFG``, ...);
  a pytest node id (``tests/x.py::test_y``) names a test defined in that file;
- backticked dotted names of the packages (``cxr.evaluation.operating_points.positive_findings``):
  the module exists and defines the name.

``cxr/<word>`` with no such file or folder is a TensorBoard scalar (``cxr/AP50``), not a path.

Paths whose first component is not in the repository (``output/demo/eval``, ``deploy/``,
``films/``) are what commands write or what users pass; they are not checked.
"""
from __future__ import annotations

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "CONTRIBUTING.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md"))
)
# Folders inside repository folders that commands create (rendered / prepared data sets, caches).
GENERATED = (
    "datasets/phantom_nih/",
    "datasets/phantom_nih_cls/",
    "datasets/nih/images",
    "datasets/vindr",
    "datasets/rsna",
    ".venv/",
)
# Path components that stand for a name the user or the reader fills in.
PLACEHOLDER = re.compile(r"[<>*{}$\[\]]|\.\.\.|(^|/)(CFG|DIR|NAME|FILE|PNGS|N)(/|$)|@")
TOP_LEVEL = {e for e in os.listdir(REPO) if not e.startswith(".") or e in (".ci",)} - {
    "output",
    ".venv",
}
PACKAGES = ("cxr", "cxr_runtime", "benchmarks")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())  # underscores stay (code spans)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
    text = FENCE.sub("", open(path, encoding="utf-8").read())
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}


def _link_problems(page: str, text: str) -> list[str]:
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (
            os.path.normpath(os.path.join(REPO, os.path.dirname(page), file))
            if file
            else (os.path.join(REPO, page))
        )
        if not os.path.exists(path):
            problems.append(f"{page}: link to missing {target}")
        elif anchor and path.endswith(".md") and anchor not in _anchors(path):
            problems.append(f"{page}: link {target}: no heading with anchor #{anchor}")
    return problems


def _repository_path(token: str) -> str | None:
    """The repository-relative path a backticked token names, or None when it names none."""
    token = token.strip().rstrip(".,;:")
    if " " in token or "=" in token or token.startswith(("-", "/", "http")):
        return None
    first = token.split("/")[0]
    if first not in TOP_LEVEL or PLACEHOLDER.search(token):
        return None
    if first == token and "." not in token and first not in ("Makefile",):
        return None  # a bare word such as `tools` or `configs` in prose
    if re.fullmatch(r"cxr/\w+", token) and not os.path.exists(os.path.join(REPO, token)):
        return None  # a TensorBoard scalar (`cxr/AP50`), not a path
    if any(token.startswith(g) or token + "/" == g for g in GENERATED):
        return None
    return token


def _dotted_problem(token: str) -> str | None:
    """For ``cxr.x.y.name``: None when module ``cxr.x.y`` exists and mentions ``name``. Checked
    only when ``cxr.x`` is a module of the package (``cxr.json``, a metadata key, is not)."""
    parts = token.split(".")
    area = os.path.join(REPO, parts[0], parts[1])
    if not (os.path.isfile(area + ".py") or os.path.isdir(area)):
        return None
    for k in range(len(parts), 0, -1):
        base = os.path.join(REPO, *parts[:k])
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                rest = parts[k:]
                if not rest:
                    return None
                src = open(candidate, encoding="utf-8").read()
                if re.search(rf"\b{re.escape(rest[0])}\b", src):
                    return None
                return f"{token}: {os.path.relpath(candidate, REPO)} has no {rest[0]}"
    return f"{token}: no such module"


def _tokens(text: str) -> list[str]:
    """Backticked spans, and the words of fenced code blocks (commands name paths too)."""
    words = []
    for block in FENCE.findall(text):
        for line in block.splitlines()[1:-1]:
            line = line.split("#", 1)[0] if not line.lstrip().startswith("|") else line
            words += [w.strip("'\"(),") for w in re.split(r"[\s=]+", line) if w]
    return CODE.findall(FENCE.sub("", text)) + words


def _code_problems(page: str, text: str) -> list[str]:
    problems = []
    for token in _tokens(text):
        token = token.strip()
        if re.fullmatch(rf"({'|'.join(PACKAGES)})(\.\w+)+", token):
            problem = _dotted_problem(token)
            if problem:
                problems.append(f"{page}: `{problem}`")
            continue
        token, _, test = token.partition("::")  # a pytest node id: file::test_name
        path = _repository_path(token)
        if path and not os.path.exists(os.path.join(REPO, path)):
            problems.append(f"{page}: `{token}` does not exist")
        elif path and test:
            src = open(os.path.join(REPO, path), encoding="utf-8").read()
            if not re.search(rf"^def {re.escape(test.split('[')[0])}\(", src, re.M):
                problems.append(f"{page}: `{token}` has no {test}")
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_every_path_named_in_the_page_exists(page):
    text = open(os.path.join(REPO, page), encoding="utf-8").read()
    problems = _link_problems(page, text) + _code_problems(page, text)
    assert not problems, "\n".join(problems)


def test_the_checker_finds_what_is_missing():
    page = "docs/x.md"
    text = (
        "[a](missing.md) [b](evaluation.md#no-such-heading) [c](evaluation.md#operating-points) "
        "[d](https://example.org/x) `tools/no_such_tool.py` `tools/eval.py` `output/demo/eval` "
        "`datasets/phantom_nih/images` `configs/<data>/x.yaml` `cxr.evaluation.no_such` "
        "`cxr.evaluation.operating_points.select_thresholds` `cxr_runtime.optional.nothing_here` "
        "`tests/test_docs.py::test_slugs_follow_github` `tests/test_docs.py::test_not_there` "
        "`cxr/AP50` `cxr.json`\n```bash\npython tools/not_a_tool.py --config-file "
        "configs/nih/efficientdet_d0.yaml  # tools/commented_out.py\n```\n"
    )
    problems = _link_problems(page, text) + _code_problems(page, text)
    assert len(problems) == 7, problems
    for word in ("missing.md", "#no-such-heading", "no_such_tool.py", "no_such", "nothing_here",
                 "test_not_there", "not_a_tool.py"):  # fmt: skip
        assert any(word in p for p in problems), word


def test_slugs_follow_github():
    assert _slug("`make demo`") == "make-demo"
    assert _slug("Load test of `tools/predict.py`") == "load-test-of-toolspredictpy"
    assert _slug("What changed in the fine-tune, and what it cost") == (
        "what-changed-in-the-fine-tune-and-what-it-cost"
    )


TIMING_COLUMN = re.compile(
    r"\b(ms|wall|cpu s|s ?/ ?iter\w*|images ?/ ?s|seconds|latency|throughput|time)\b", re.I
)


def _timing_tables(text: str) -> list[str]:
    """Header rows of markdown tables with a column of times (ms, wall, CPU s, images/s, ...)."""
    lines = text.splitlines()
    return [
        head
        for head, sep in zip(lines, lines[1:])
        if head.startswith("|")
        and re.fullmatch(r"\|[\s|:-]+\|?", sep.strip() or "x")
        and TIMING_COLUMN.search(head)
    ]


@pytest.mark.parametrize("page", [p for p in PAGES if p != "docs/benchmarks.md"])
def test_timing_tables_live_in_benchmarks_md_only(page):
    text = open(os.path.join(REPO, page), encoding="utf-8").read()
    assert not _timing_tables(text), f"{page}: move to docs/benchmarks.md: {_timing_tables(text)}"


def test_timing_table_detection():
    assert _timing_tables("| step | wall |\n| --- | --- |\n| a | 3 s |")
    assert _timing_tables("| model | ms / image |\n|---|---|")
    assert not _timing_tables("| config | model | params | GFLOPs |\n|---|---|---|---|")
    assert not _timing_tables("| step | wall |\n| a | 3 s |")  # not a header row
    bench = open(os.path.join(REPO, "docs", "benchmarks.md"), encoding="utf-8").read()
    assert len(_timing_tables(bench)) >= 3


def test_config_docstring_lists_every_config_file():
    import cxr.config

    files = sorted(
        os.path.relpath(p, REPO)
        for p in glob.glob(os.path.join(REPO, "cxr", "**", "*config.py"), recursive=True)
        if os.path.relpath(p, REPO) != "cxr/config.py"
    )
    assert len(files) >= 8
    missing = [f for f in files if f"``{f}``" not in cxr.config.__doc__]
    assert not missing, f"cxr/config.py's docstring does not list {missing}"
