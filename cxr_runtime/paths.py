"""Input and output paths of the tools: missing inputs, and output folders that would touch
their inputs."""

from __future__ import annotations

import os
from typing import Sequence

__all__ = ["check_output_dir", "check_predict_output", "input_not_found"]


def input_not_found(what: str, path: str, flag: str) -> FileNotFoundError:
    """The error for a missing input ``path`` given with ``flag``; it adds a hint when the
    path looks like a ``KEY VALUE`` config override swallowed by a multi-value flag."""
    hint = f" (KEY VALUE overrides go after another flag, not after {flag})"
    return FileNotFoundError(
        f"{what} not found: {path}" + (hint if path.split(".")[0].isupper() else "")
    )


def check_output_dir(output_dir: str, inputs: Sequence[str]) -> None:
    """Refuse an output folder that is, or contains, one of the input paths (empty ones are
    skipped).

    Raises:
        ValueError naming the clashing input.
    """
    out = os.path.realpath(output_dir)
    for p in inputs:
        if not p:
            continue
        rp = os.path.realpath(p)
        if rp == out or os.path.commonpath([out, rp]) == out:
            raise ValueError(
                f"--output {output_dir!r} would write over or beside the input {p!r}; "
                "choose a folder that contains no input"
            )


def check_predict_output(output_dir: str, inputs: Sequence[str]) -> None:
    """Refuse a missing input first, then an output folder that is an input folder, lies
    inside one, is the folder of an input file, or is an input file.

    Raises:
        FileNotFoundError naming a missing input (:func:`input_not_found`); ValueError naming
        the input an output folder would touch.
    """
    for p in inputs:
        if not os.path.exists(p):
            raise input_not_found("input", p, "--input")
    out = os.path.realpath(output_dir)
    for p in inputs:
        rp = os.path.realpath(p)
        folder = rp if os.path.isdir(rp) else os.path.dirname(rp)
        if out == rp or out == folder or os.path.commonpath([out, folder]) == folder:
            raise ValueError(
                f"--output {output_dir!r} is next to or inside the input {p!r}; "
                "predictions are never written beside their inputs"
            )
