"""Deployment benchmark rows on tiny sizes: consistent rows, the DICOM file is a real film."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from benchmarks import deploy
from benchmarks.report import validate_results, summary_row


def _args(**kw):
    return argparse.Namespace(config_file="", opts=[], device="cpu", warmup=0, repeats=1,
                              input_size=128, **kw)  # fmt: skip


def test_test_dicom_reads_as_a_windowed_film(tmp_path):
    from cxr.data.io import read_xray

    gray = read_xray(deploy.write_test_dicom(str(tmp_path / "f.dcm"), hw=(250, 204)))
    assert gray.shape == (250, 204) and gray.dtype == np.uint8 and gray.std() > 10


def test_onnxruntime_inference_row():
    pytest.importorskip("effdet")
    row = deploy.inference_d0_onnxruntime_vs_effdet_d0(_args())[0]
    validate_results([summary_row(row)])
    assert row["name"] == "inference_d0_onnxruntime_vs_effdet_d0" and row["torch_fused_ms"] > 0


def test_dicom_end_to_end_row(monkeypatch):
    monkeypatch.setattr(deploy, "DICOM_HW", (300, 256))
    monkeypatch.setattr(deploy.write_test_dicom, "__defaults__", ((300, 256), 0))
    row = deploy.predict_dicom_end_to_end_d0(_args())[0]
    validate_results([summary_row(row)])
    assert row["unit"] == "s/image" and row["goal_s"] == 0.5
