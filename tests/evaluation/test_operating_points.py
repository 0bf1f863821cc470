"""Operating-point selection and thresholds.json I/O."""

import json

import numpy as np
import pytest

from cxr.evaluation.operating_points import load_thresholds, save_thresholds, select_thresholds


def test_youden_and_target_sensitivity_hand_case():
    # class a: positives 0.9, 0.6, 0.2; negatives 0.7, 0.1, 0.05
    s = np.array([[0.9], [0.6], [0.2], [0.7], [0.1], [0.05]])
    y = np.array([[1], [1], [1], [0], [0], [0]], bool)
    t, meta = select_thresholds(s, y, ["a"], "youden")
    # J at 0.9: 1/3+1-1=1/3; 0.7: 1/3+2/3-1=0; 0.6: 2/3+2/3-1=1/3; 0.2: 1+2/3-1=2/3; 0.1: 1/3
    assert t == {"a": 0.2} and meta["rule"] == "youden"
    # tie: positives 0.9, 0.5; negatives 0.7, 0.1 -> J(0.9) = J(0.5) = 1/2: the higher wins
    t, _ = select_thresholds(
        np.array([[0.9], [0.5], [0.7], [0.1]]), np.array([[1], [1], [0], [0]], bool), ["a"]
    )
    assert t == {"a": 0.9}
    t, _ = select_thresholds(s, y, ["a"], "sensitivity", target_sensitivity=0.9)
    assert t == {"a": 0.2}
    t, _ = select_thresholds(s, y, ["a"], "sensitivity", target_sensitivity=0.5)
    assert t == {"a": 0.6}


def test_class_without_positives_keeps_default():
    s = np.array([[0.9, 0.2], [0.1, 0.3]])
    y = np.array([[1, 0], [0, 0]], bool)
    t, meta = select_thresholds(s, y, ["a", "b"], default=0.3)
    assert t == {"a": 0.9, "b": 0.3} and meta["defaulted"] == ["b"]
    with pytest.raises(ValueError, match="rule"):
        select_thresholds(s, y, ["a", "b"], "best")


def test_save_load_roundtrip_and_errors(tmp_path):
    p = str(tmp_path / "thresholds.json")
    save_thresholds(p, {"Mass": 0.25, "Nodule": 0.5}, {"rule": "youden"})
    assert load_thresholds(p) == {"Mass": 0.25, "Nodule": 0.5}
    assert json.load(open(p))["format"] == "cxr-thresholds/1"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"thresholds": {"Mass": "high"}}))
    with pytest.raises(ValueError, match=r"bad.json: field thresholds.Mass"):
        load_thresholds(str(bad))
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_thresholds(str(bad))
