"""Classification metrics against scikit-learn, and CXRClassificationEvaluator's report files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from sklearn.metrics import average_precision_score, roc_auc_score

from cxr.evaluation import build_evaluator
from cxr.evaluation.classification import (
    average_precision,
    compute_classification_metrics,
    evaluate_classification_files,
)
from cxr.config import get_cfg


def _data(n=60, c=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, c)) < [0.3, 0.5, 0.1][:c]
    scores = np.clip(0.35 * labels + rng.random((n, c)) * 0.7, 0, 1).round(2)  # ties on purpose
    return scores, labels


def test_average_precision_matches_sklearn_with_ties_and_weights():
    s, y = _data()
    for c in range(3):
        assert average_precision(s[:, c], y[:, c])[0] == pytest.approx(
            average_precision_score(y[:, c], s[:, c])
        )
    w = np.random.default_rng(3).integers(0, 3, size=(2, len(s))).astype(float)
    got = average_precision(s[:, 0], y[:, 0], w)
    for b in range(2):
        ref = average_precision_score(y[:, 0], s[:, 0], sample_weight=w[b])
        assert got[b] == pytest.approx(ref)
    assert np.isnan(average_precision(s[:, 0], np.zeros(len(s), bool))[0])


def test_metrics_match_sklearn_and_hand_counts():
    s, y = _data()
    names = ["a", "b", "c"]
    res = compute_classification_metrics(s, y, names, cm_threshold=0.5)
    m = res.metrics
    for c, n in enumerate(names):
        assert m["per_class"][n]["auroc"] == pytest.approx(roc_auc_score(y[:, c], s[:, c]))
        pred = s[:, c] >= 0.5
        tp, fn = int((pred & y[:, c]).sum()), int((~pred & y[:, c]).sum())
        tn = int((~pred & ~y[:, c]).sum())
        assert (m["per_class"][n]["tp"], m["per_class"][n]["fn"], m["per_class"][n]["tn"]) == (
            tp, fn, tn,
        )  # fmt: skip
        assert m["per_class"][n]["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["micro"]["auroc"] == pytest.approx(roc_auc_score(y.ravel(), s.ravel()))
    assert m["micro"]["ap"] == pytest.approx(average_precision_score(y.ravel(), s.ravel()))
    assert m["macro"]["auroc"] == pytest.approx(roc_auc_score(y, s, average="macro"))
    assert m["macro"]["ap"] == pytest.approx(average_precision_score(y, s, average="macro"))


def test_bootstrap_cis_are_seeded_by_patient_and_bracket_the_estimate():
    s, y = _data(n=80)
    patients = [f"p{i // 2}" for i in range(80)]
    kw = dict(bootstrap=200, seed=5, patient_ids=patients)
    a = compute_classification_metrics(s, y, ["a", "b", "c"], **kw).metrics
    b = compute_classification_metrics(s, y, ["a", "b", "c"], **kw).metrics
    assert a["ci95"] == b["ci95"] and a["settings"]["bootstrap_unit"] == "patient"
    lo, hi = a["ci95"]["macro.auroc"]
    assert lo < a["macro"]["auroc"] < hi
    lo, hi = a["ci95"]["per_class.b.ap"]
    assert lo < a["per_class"]["b"]["ap"] < hi


def test_operating_points_are_applied_and_chosen_per_class():
    s, y = _data()
    res = compute_classification_metrics(s, y, ["a", "b", "c"], thresholds={"a": 0.9})
    assert res.metrics["per_class"]["a"]["threshold"] == 0.9
    assert res.metrics["per_class"]["b"]["threshold"] == 0.5  # cm_threshold default
    sel = res.selected_thresholds["a"]  # Youden's J on this set
    j = [((s[:, 0] >= t) & y[:, 0]).sum() / y[:, 0].sum()
         - ((s[:, 0] >= t) & ~y[:, 0]).sum() / (~y[:, 0]).sum() for t in np.unique(s[:, 0])]  # fmt: skip
    assert max(j) == pytest.approx(
        ((s[:, 0] >= sel) & y[:, 0]).sum() / y[:, 0].sum()
        - ((s[:, 0] >= sel) & ~y[:, 0]).sum() / (~y[:, 0]).sum()
    )


@pytest.fixture
def cls_dataset():
    s, y = _data(n=24)
    name = "cxr_test_cls_eval"
    recs = [{"file_name": f"{i}.png", "image_id": f"im{i}", "patient_id": f"p{i // 3}",
             "labels": y[i].astype(int).tolist()} for i in range(24)]  # fmt: skip
    DatasetCatalog.register(name, lambda: recs)
    MetadataCatalog.get(name).set(thing_classes=["a", "b", "c"], evaluator_type="cxr_cls")
    yield name, s, y
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_evaluator_writes_report_and_files_mode_rescores_it(tmp_path, cls_dataset):
    name, s, y = cls_dataset
    cfg = get_cfg()
    cfg.CXR.EVAL.BOOTSTRAP = 50
    out = str(tmp_path / "eval")
    ev = build_evaluator(cfg, name, out)
    assert type(ev).__name__ == "CXRClassificationEvaluator"
    ev.reset()
    rng = np.random.default_rng(0)
    for i in range(24):
        ev.process(
            [{"image_id": f"im{i}"}],
            [{"scores": torch.tensor(s[i]), "embedding": torch.tensor(rng.random(8) + y[i, 1])}],
        )
    flat = ev.evaluate()["cls"]
    assert flat["auroc_macro"] == pytest.approx(roc_auc_score(y, s, average="macro"))
    files = set(os.listdir(out))
    assert {"metrics.json", "per_class.csv", "thresholds.json", "predictions.json",
            "roc_curves.png", "tsne.png"} <= files  # fmt: skip
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["settings"]["bootstrap_unit"] == "patient"
    assert "per_class.a.auroc" in metrics["ci95"]
    res = evaluate_classification_files(
        name, os.path.join(out, "predictions.json"), str(tmp_path / "again"), plots=False
    )
    assert res.metrics["macro"]["auroc"] == pytest.approx(flat["auroc_macro"])
    with pytest.raises(ValueError, match="field format"):
        evaluate_classification_files(name, os.path.join(out, "metrics.json"), str(tmp_path / "x"))
