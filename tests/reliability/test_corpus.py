"""Every case of the bad-input corpus ends as the README documents: read, a clear error naming
file / row / field, or (``strict=False``) a repair or skip whose count is logged."""
from __future__ import annotations

import logging

import pytest

from cxr.data.datasets.common import AnnotationError
from cxr.data.io import ImageReadError

from .corpus import CASES, Case, run_case

DOCUMENTED = (AnnotationError, ImageReadError, ValueError)


def _check_error(case: Case, err: BaseException, path_hint: str) -> None:
    # One of the documented types, never a library exception passed through.
    assert type(err) in (AnnotationError, ImageReadError, ValueError), repr(err)
    assert err.__cause__ is None or isinstance(err.__cause__, DOCUMENTED)
    msg = str(err)
    assert path_hint in msg, msg  # names the file
    if isinstance(err, AnnotationError):
        assert (err.row, err.field) == (case.row, case.field), msg
        assert f"row {case.row}" in msg and repr(case.field) in msg
    else:
        for part in (case.row, case.field, case.reason):
            if part is not None and part != "":
                assert str(part) in msg, msg


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}:{c.name}" for c in CASES])
def test_corpus_case(case: Case, tmp_path, caplog):
    (tmp_path / "probe").mkdir()
    # The file the reader is pointed at (same relative path under "in" and "lenient").
    hint = case.write(str(tmp_path / "probe")).replace(str(tmp_path / "probe"), "")
    if case.expect == "ok":
        with caplog.at_level(logging.WARNING, logger="cxr"):
            out = run_case(case, str(tmp_path / "in"))
        case.check(out)  # asserts the specific result
        if case.log:
            assert case.log in caplog.text
        return
    with pytest.raises(DOCUMENTED) as e:
        run_case(case, str(tmp_path / "in"), strict=True)
    _check_error(case, e.value, case.names or hint)
    if case.expect == "error" and case.group not in ("image", "coco"):
        with pytest.raises(type(e.value)):  # not repairable: same error when lenient
            run_case(case, str(tmp_path / "lenient"), strict=False)
    if case.expect == "lenient":
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cxr"):
            out = run_case(case, str(tmp_path / "lenient"), strict=False)
        assert case.log in caplog.text, caplog.text
        case.check(out)  # asserts the specific result


def test_every_read_case_checks_its_result():
    unchecked = [c.name for c in CASES if c.expect in ("ok", "lenient") and c.check is None]
    assert unchecked == []


def test_corpus_covers_every_input_class():
    names = " ".join(c.name for c in CASES).lower()
    for needle in ("zero-byte", "truncated", "text file", "rgba", "16-bit", "monochrome1",
                   "without pixel data", "bits", "missing columns", "extra columns", "bom",
                   "crlf", "quoted", "unknown class", "nan", "text coordinate", "negative",
                   "zero height", "beyond", "duplicate", "empty csv", "../../etc/passwd",
                   "no images key", "unknown category_id", "w = 0", "h < 0"):  # fmt: skip
        assert needle in names, needle
