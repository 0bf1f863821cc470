"""Operating-point selection and thresholds.json I/O."""

import json

import numpy as np
import pytest

from cxr.evaluation.operating_points import (
    OPERATING_POINT_REGISTRY,
    load_thresholds,
    positive_findings,
    save_thresholds,
    select_thresholds,
)


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
    assert meta["defaulted_reasons"] == {"b": "no positive images"}
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


def test_undefined_points_keep_cm_threshold_never_zero():
    """The validation run of a model that detects little: no class may get threshold 0.0."""
    # a: detections on negatives only; b: no detection at all; c: a positive image scored 0
    # and one scored 0.4 (defined, > 0); d: every image positive.
    s = np.array(
        [[0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.4, 0.2], [0.6, 0.0, 0.0, 0.1], [0.2, 0.0, 0.3, 0.7]]
    )
    y = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]], bool)
    for rule in OPERATING_POINT_REGISTRY.names():
        t, meta = select_thresholds(s, y, list("abcd"), rule, 0.9, default=0.3)
        assert min(t.values()) > 0, (rule, t)
        assert t["a"] == t["b"] == t["d"] == 0.3
        assert meta["defaulted_reasons"] == {
            "a": "no detections on positive images",
            "b": "no detections on positive images",
            "d": "no negative images",
        }
    # c, Youden over candidates 0.4, 0.3: J(0.4) = 1/2 + 1 - 1, J(0.3) = 1/2 + 1/2 - 1
    assert select_thresholds(s, y, list("abcd"), "youden")[0]["c"] == 0.4
    # c, target sensitivity 0.9 is out of reach (a positive has no detection): lowest candidate
    assert select_thresholds(s, y, list("abcd"), "sensitivity", 0.9)[0]["c"] == 0.3


def test_positive_findings_rule():
    s = np.array([0.0, 0.0, 0.2, 0.3, 0.5])
    assert positive_findings(s, 0.3).tolist() == [False, False, False, True, True]
    # threshold 0 (an old thresholds.json): images without a detection stay negative
    assert positive_findings(s, 0.0).tolist() == [False, False, True, True, True]
    assert positive_findings(s, np.array([0, 0, 0.3, 0.3, 0.6])).tolist() == [0, 0, 0, 1, 0]
