"""Runs tool command lines one after another in this process, as a user runs them in a shell,
and records every warning they give: Python warnings as the interpreter would print them (a
warning shown once per place is recorded with the first command that gives it) and log records
at WARNING or above. One process for a page's commands keeps the
walkthrough test cheap (torch and detectron2 are imported once).

    python walkthrough_driver.py REPO commands.json report.json

commands.json: a list of argv lists whose first item is ``tools/<tool>.py``. report.json gets
one entry per command: ``{"argv", "exit", "warnings": [...], "error"}``; the driver stops at
the first command that fails.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import sys
import traceback
import warnings


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname}: {record.getMessage()}")


_SHOWN: list[str] = []


def _record_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the whole run: what the interpreter would print, recorded
    (the filters, cxr's included, act as in a user's process)."""
    _SHOWN.append(f"{category.__name__}: {message} ({filename}:{lineno})")


def _run(repo: str, argv: list[str]) -> dict:
    records = _Records()
    loggers = [logging.getLogger(n) for n in ("", "detectron2", "fvcore", "cxr", "cxr_runtime")]
    for lg in loggers:
        lg.addHandler(records)
    entry = {"argv": argv, "exit": 0, "warnings": [], "error": ""}
    sys.argv = list(argv)
    shown = len(_SHOWN)
    try:
        runpy.run_path(os.path.join(repo, argv[0]), run_name="__main__")
    except SystemExit as e:
        entry["exit"] = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        entry["error"] = "" if entry["exit"] == 0 else str(e.code)
    except Exception:  # noqa: BLE001  (reported to the test, which fails on it)
        entry["exit"], entry["error"] = 1, traceback.format_exc()
    for lg in loggers:
        lg.removeHandler(records)
    entry["warnings"] = _SHOWN[shown:] + records.lines
    return entry


def main() -> None:
    repo, commands, report = sys.argv[1:4]
    warnings.showwarning = _record_warning
    out = []
    for argv in json.load(open(commands, encoding="utf-8")):
        out.append(_run(repo, argv))
        if out[-1]["exit"] != 0:
            break
    with open(report, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
