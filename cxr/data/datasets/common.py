"""Shared pieces of the annotation loaders: row validation, path safety, summary logging.

Rows are numbered as lines of the CSV file (the header is line 1, the first data row line 2), so
an error points at the line a user opens in an editor.
"""

from __future__ import annotations

import collections
import csv
import functools
import logging
import math
import os
import re
import warnings
import zlib
from typing import Callable, Iterable, Iterator, Sequence

import pandas as pd
from tabulate import tabulate

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..io import ImageReadError, read_xray_size
from ..splits import SPLIT_NAMES

__all__ = [
    "AnnotationError",
    "RowChecker",
    "log_summary",
    "csv_line",
    "read_csv_checked",
    "read_csv_rows",
    "register_splits",
    "rows_with_images",
    "PALETTE",
]

logger = logging.getLogger(__name__)

# Distinct colors (RGB 0-255) for up to 15 classes, used as metadata ``thing_colors``.
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195),
]  # fmt: skip


def csv_line(index: int) -> int:
    """1-based line number in the CSV file of the 0-based data row ``index`` (header = line 1)."""
    return int(index) + 2


class AnnotationError(ValueError):
    """A bad annotation row. ``file``, ``row`` (CSV line number) and ``field`` name the culprit."""

    def __init__(self, file: str, row: int | None, field: str, reason: str):
        self.file, self.row, self.field, self.reason = str(file), row, field, reason
        super().__init__(f"{self.file}, row {row}, field {field!r}: {reason}")


class RowChecker:
    """Validates rows of one annotation file; repairs or skips bad ones when ``strict=False``.

    Args:
        file: the annotation file (named in errors).
        strict: raise :class:`AnnotationError` on the first bad row (True) or repair (clip) /
            skip it and count it (False).
        tolerance: pixels a box may extend beyond the image before it counts as outside.
    """

    def __init__(self, file: str, strict: bool = True, tolerance: float = 2.0):
        self.file = str(file)
        self.strict = strict
        self.tolerance = tolerance
        self.repaired: collections.Counter = collections.Counter()
        self.skipped: collections.Counter = collections.Counter()
        self._seen: set = set()
        self._failed_rows: set = set()

    def fail(self, row: int, field: str, reason: str) -> None:
        """Raise in strict mode; otherwise count the row as skipped."""
        if self.strict:
            raise AnnotationError(self.file, row, field, reason)
        if row in self._failed_rows:
            return  # a row with several bad fields is one skipped row
        self._failed_rows.add(row)
        self.skipped[f"{field}: {reason.split(':')[0]}"] += 1

    def number(self, row: int, field: str, value) -> float | None:
        """``value`` as a finite float, or None (after :meth:`fail`)."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(row, field, f"not a number: {value!r}")
            return None
        if not math.isfinite(v):
            self.fail(row, field, f"not a finite number: {value!r}")
            return None
        return v

    def image_path(self, row: int, field: str, root: str, name) -> str | None:
        """``root/name``, refusing names that are empty or would leave ``root``."""
        name = "" if name is None or (isinstance(name, float) and math.isnan(name)) else str(name)
        name = name.strip()
        if not name:
            self.fail(row, field, "empty file name")
            return None
        root_abs = os.path.abspath(root)
        path = os.path.abspath(os.path.join(root_abs, name))
        if os.path.isabs(name) or os.path.commonpath([root_abs, path]) != root_abs:
            # Never repaired: a path outside the image root is skipped even when not strict.
            self.fail(row, field, f"path {name!r} leaves the image root {root}")
            return None
        return os.path.join(root, name)

    def box_xyxy(
        self, row: int, fields: Sequence[str], box: Sequence[float], height: int, width: int
    ) -> list[float] | None:
        """Check an XYXY_ABS box against an image of ``height`` x ``width`` pixels.

        Args:
            fields: names of the four source columns (for error messages).
            box: ``[x0, y0, x1, y1]`` floats (already finite).

        Returns:
            the box, clipped to the image when repaired; None when skipped.
        """
        x0, y0, x1, y1 = box
        if x1 - x0 <= 0:
            self.fail(row, fields[2], f"zero or negative width ({x1 - x0:g})")
            return None
        if y1 - y0 <= 0:
            self.fail(row, fields[3], f"zero or negative height ({y1 - y0:g})")
            return None
        tol = self.tolerance
        for name, v, hi in zip(fields, (x0, y0, x1, y1), (width, height, width, height)):
            if v < -tol or v > hi + tol:
                if self.strict:
                    raise AnnotationError(
                        self.file, row, name, f"box coordinate {v:g} outside the image [0, {hi}]"
                    )
                self.repaired["box clipped to the image"] += 1
                break
        c = [min(max(x0, 0.0), width), min(max(y0, 0.0), height)]
        c += [min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
        if c[2] - c[0] <= 0 or c[3] - c[1] <= 0:
            self.fail(row, fields[0], "box lies outside the image")
            return None
        return c

    def image_record(self, path: str, image_id: str, patient_id: str) -> dict | None:
        """A record without annotations, sized from the image header; None (counted) for an
        unreadable image when not strict.

        Raises:
            ImageReadError: unreadable image in strict mode.
        """
        try:
            h, w = read_xray_size(path)
        except ImageReadError:
            if self.strict:
                raise
            self.skipped["unreadable image"] += 1
            return None
        return {"file_name": path, "image_id": image_id, "height": h, "width": w,
                "patient_id": patient_id, "annotations": []}  # fmt: skip

    def duplicate(self, row: int, field: str, key) -> bool:
        """True (after :meth:`fail`) when ``key`` was seen on an earlier row."""
        if key in self._seen:
            self.fail(row, field, "duplicate row")
            return True
        self._seen.add(key)
        return False

    def report(self) -> None:
        """Log what was repaired or skipped (non-strict mode)."""
        for what, counter in (("repaired", self.repaired), ("skipped", self.skipped)):
            if counter:
                n = sum(counter.values())
                detail = ", ".join(f"{k}: {v}" for k, v in sorted(counter.items()))
                logger.warning("%s: %s %d row(s) (%s)", self.file, what, n, detail)

    @property
    def num_repaired(self) -> int:
        return sum(self.repaired.values())

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())


_PANDAS_LINE = re.compile(r"\bline (\d+)")
_PANDAS_ROW = re.compile(r"\bat row (\d+)")


def _first_long_row(path: str) -> int | None:
    """1-based line of the first row with more fields than the header (plain CSV only)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            n = len(next(rows))
            for line, r in enumerate(rows, start=2):
                if len(r) > n:
                    return line
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        pass
    return None


def read_csv_rows(path: str, fields: Sequence[str] | None = None, **kwargs) -> pd.DataFrame:
    """``pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)`` whose failures on a
    malformed file (empty, not CSV, unbalanced quotes, truncated ``.gz``, not UTF-8, fewer
    columns than ``usecols``) raise :class:`AnnotationError` instead of a pandas / codec error.

    Args:
        fields: names of the columns selected by position with ``usecols`` (for messages).

    Raises:
        AnnotationError: naming the file, the line when pandas reports one (else 1, the
            header) and the field (the missing column, or ``"(CSV syntax)"``).
        FileNotFoundError: the file does not exist.
    """
    try:
        with warnings.catch_warnings():
            # index_col=False + a row longer than the header: pandas would drop data silently.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except pd.errors.ParserWarning:
        row = _first_long_row(path)
        raise AnnotationError(
            path, row, "(CSV syntax)", "row has more fields than the header"
        ) from None
    except pd.errors.EmptyDataError:
        raise AnnotationError(path, 1, "(header)", "file is empty: no header row") from None
    except pd.errors.ParserError as e:
        m = _PANDAS_LINE.search(str(e))
        row = int(m.group(1)) if m else None
        m = _PANDAS_ROW.search(str(e))  # "EOF inside string starting at row N" (0-based)
        row = int(m.group(1)) + 1 if m and row is None else row
        raise AnnotationError(path, row, "(CSV syntax)", f"malformed CSV: {e}") from None
    except ValueError as e:  # pandas: "Usecols do not match columns"; codecs: UnicodeDecodeError
        usecols = kwargs.get("usecols")
        if "Usecols" in str(e) and usecols is not None:
            found = len(pd.read_csv(path, nrows=0, dtype=str).columns)
            names = list(fields) if fields else [str(c) for c in usecols]
            missing = names[found] if found < len(names) else names[-1]
            raise AnnotationError(
                path, 1, missing, f"column missing from the header ({found} column(s) found, "
                f"{len(names)} expected: {', '.join(names)})"
            ) from None
        row = _first_long_row(path)
        if row is not None:  # pandas fails inside usecols on a row longer than the header
            raise AnnotationError(
                path, row, "(CSV syntax)", "row has more fields than the header"
            ) from None
        raise AnnotationError(path, None, "(file)", f"not a readable CSV: {e}") from None
    except (EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise AnnotationError(
            path, None, "(file)", f"not a readable CSV ({type(e).__name__}: {e})"
        ) from None


def read_csv_checked(path: str, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV as strings (empty cells stay ``""``), requiring the ``required`` columns.

    Raises:
        AnnotationError: a required column is missing (row 1, the header) or the file is not a
            readable CSV (see :func:`read_csv_rows`).
    """
    df = read_csv_rows(path, index_col=False)
    for c in required:
        if c not in df:
            raise AnnotationError(path, 1, c, "column missing from the header")
    return df


def rows_with_images(
    check: RowChecker,
    csv_file: str,
    columns: Sequence[str],
    id_field: str,
    image_root: str,
    suffix: str,
) -> Iterator[tuple[int, dict, str, str]]:
    """``(CSV line, row, image id, image path)`` of each row of ``csv_file`` (strings; the
    ``columns`` required) whose ``id_field`` names an image ``<id><suffix>`` inside
    ``image_root``; a row whose path would leave the root goes to ``check`` (raised or skipped).
    """
    for i, r in enumerate(read_csv_checked(csv_file, columns).to_dict("records")):
        line = csv_line(i)
        image_id = r[id_field].strip()
        path = check.image_path(line, id_field, image_root, f"{image_id}{suffix}")
        if path is not None:
            yield line, r, image_id, path


def log_summary(name: str, dicts: Iterable[dict], classes: Sequence[str]) -> str:
    """Log (and return) a table of images, patients, boxes per class and negatives."""
    dicts = list(dicts)
    boxes = collections.Counter()
    images = collections.Counter()
    for d in dicts:
        cats = [a["category_id"] for a in d["annotations"]]
        boxes.update(cats)
        images.update(set(cats))
    rows = [[c, images[i], boxes[i]] for i, c in enumerate(classes)]
    rows.append(["total", sum(1 for d in dicts if d["annotations"]), sum(boxes.values())])
    table = tabulate(rows, headers=["class", "images", "boxes"], tablefmt="pipe")
    n_neg = sum(1 for d in dicts if not d["annotations"])
    n_pat = len({d.get("patient_id") for d in dicts})
    msg = f"{name}: {len(dicts)} images ({n_neg} negatives) of {n_pat} patients\n{table}"
    logger.info(msg)
    return msg


def register_splits(
    prefix: str,
    load_split: Callable[[str], list],
    classes: Sequence[str],
    evaluator_type: str,
    folder: str,
    **metadata,
) -> list[str]:
    """Register ``<prefix>_{train,val,test,all}`` lazily; names already registered are skipped.

    Args:
        load_split: ``fn(split name) -> dataset dicts`` (called when a name is first used).
        classes: ``thing_classes`` (colours from :data:`PALETTE`).
        evaluator_type: metadata ``evaluator_type`` (``cxr``, ``cxr_cls``).
        folder: metadata ``dataset_root``.
        metadata: further metadata fields.

    Returns:
        the names registered now.
    """
    done = []
    for split in SPLIT_NAMES + ("all",):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, functools.partial(load_split, split))
        MetadataCatalog.get(name).set(
            thing_classes=list(classes),
            thing_colors=[PALETTE[i % len(PALETTE)] for i in range(len(classes))],
            evaluator_type=evaluator_type,
            dataset_root=folder,
            split=split,
            **metadata,
        )
        done.append(name)
    return done
