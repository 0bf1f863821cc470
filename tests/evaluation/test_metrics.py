"""VOC mAP@0.4, FROC, IoBB, image-level metrics and the bootstrap against independent truth."""

import numpy as np
import pytest

from cxr.evaluation import metrics as M
from cxr.evaluation.medical import compute_medical_metrics

from .cocoref import random_coco, to_detection_set


def ds_from(boxes_gt, boxes_dt, num_images, num_classes=1):
    """boxes_gt: [(image, class, x1, y1, x2, y2)]; boxes_dt: [(image, class, score, x1..y2)]."""
    g = np.array(boxes_gt, float).reshape(-1, 6)
    d = np.array(boxes_dt, float).reshape(-1, 7)
    return M.DetectionSet(
        num_images, num_classes, g[:, 0], g[:, 1], g[:, 2:], d[:, 0], d[:, 1], d[:, 3:], d[:, 2]
    )


# ---------------------------------------------------------------- VOC, reference in the test
def iou_1(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def voc_reference(ds, thr=0.4):
    """Straightforward PASCAL VOC 2010 loop: per class, highest-IoU box, > thr, all-point AP."""
    aps = []
    for c in range(ds.num_classes):
        gts = {}
        for i in np.flatnonzero(ds.gt_class == c):
            gts.setdefault(int(ds.gt_image[i]), []).append(list(ds.gt_boxes[i]))
        npos = int((ds.gt_class == c).sum())
        taken = {k: [False] * len(v) for k, v in gts.items()}
        idx = [i for i in range(len(ds.dt_scores)) if ds.dt_class[i] == c]
        idx.sort(key=lambda i: -ds.dt_scores[i])  # stable
        tp, fp = [], []
        for i in idx:
            boxes = gts.get(int(ds.dt_image[i]), [])
            ious = [iou_1(ds.dt_boxes[i], b) for b in boxes]
            if ious and max(ious) > thr:
                j = int(np.argmax(ious))
                if not taken[int(ds.dt_image[i])][j]:
                    taken[int(ds.dt_image[i])][j] = True
                    tp.append(1), fp.append(0)
                    continue
            tp.append(0), fp.append(1)
        if npos == 0:
            aps.append(np.nan)
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(float).eps)
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.concatenate(([0.0], prec, [0.0]))
        for i in range(len(mpre) - 1, 0, -1):
            mpre[i - 1] = max(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        aps.append(float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])))
    return np.array(aps)


@pytest.mark.parametrize("seed", range(10))
def test_voc_map40_equals_reference(seed):
    gt, dets = random_coco(seed, ties=seed % 2 == 0, crowd=False)
    ds = to_detection_set(gt, dets)
    per, mean = M.voc_ap(ds, 0.4)
    ref = voc_reference(ds)
    np.testing.assert_allclose(per[0], ref, atol=1e-12, equal_nan=True)
    assert abs(mean[0] - np.nanmean(ref)) < 1e-12


def test_voc_iou_strictly_greater_and_froc_iou_at_least():
    # IoU exactly 0.4 (inter 40 / union 100): FP for VOC (> 0.4), hit for FROC (>= 0.4)
    ds = ds_from([(0, 0, 0, 0, 10, 10)], [(0, 0, 0.9, 0, 0, 4, 10)], 1)
    assert M.voc_ap(ds)[1][0] == 0.0
    assert M.froc(ds)["sensitivity"][0, -1] == 1.0


# ---------------------------------------------------------------- FROC, hand-built
def test_froc_hand_case_duplicates_wrong_place_wrong_class():
    A = (0, 0, 10, 10, 30, 30)
    gts = [A]
    dts = [
        (0, 1, 0.95, 10, 10, 30, 30),  # right place, wrong class -> FP
        (0, 0, 0.90, 11, 10, 30, 31),  # the hit
        (0, 0, 0.80, 10, 11, 31, 30),  # duplicate of the hit -> FP
        (0, 0, 0.70, 60, 60, 80, 80),  # right class, wrong place -> FP
        (1, 0, 0.60, 10, 10, 30, 30),  # image without boxes -> FP
    ]
    r = M.froc(ds_from(gts, dts, 2, 2), per_class=True)
    # FP rate after each distinct score: .5 (0 hits), .5 (1 hit), 1, 1.5, 2
    np.testing.assert_array_equal(r["sensitivity"][0], [0, 0, 1, 1, 1, 1, 1])
    assert r["cpm"][0] == pytest.approx(5 / 7)
    # class 0 alone: FP rate .0 (hit), .5, 1, 1.5
    np.testing.assert_array_equal(r["per_class_sensitivity"][0, 0], [1] * 7)
    assert np.isnan(r["per_class_cpm"][0, 1])  # class 1 has no boxes


def test_froc_right_class_wrong_place_is_not_a_hit():
    ds = ds_from([(0, 0, 0, 0, 10, 10)], [(0, 0, 0.9, 50, 50, 60, 60)], 1)
    r = M.froc(ds)
    np.testing.assert_array_equal(r["sensitivity"][0], np.zeros(7))


def test_froc_ties_cannot_be_split():
    # two detections with the same score: one hit, one FP on a 1-image set -> rate 1 at once
    ds = ds_from(
        [(0, 0, 0, 0, 10, 10)], [(0, 0, 0.5, 0, 0, 10, 10), (0, 0, 0.5, 50, 50, 60, 60)], 1
    )
    r = M.froc(ds)
    np.testing.assert_array_equal(r["sensitivity"][0], [0, 0, 0, 1, 1, 1, 1])


def test_froc_greedy_takes_unmatched_box_with_highest_iou():
    # two boxes; first detection overlaps both (better with B), second only fits B well:
    # greedy gives B to the first, so the second (IoU with A < 0.4) is a FP.
    gts = [(0, 0, 0, 0, 10, 10), (0, 0, 2, 0, 12, 10)]
    dts = [(0, 0, 0.9, 2, 0, 12, 10), (0, 0, 0.8, 3, 0, 13, 10)]
    r = M.froc_matches(ds_from(gts, dts, 1))
    np.testing.assert_array_equal(r.tp, [True, True])  # second takes A (IoU 7/13 > .4)
    dts = [(0, 0, 0.9, 2, 0, 12, 10), (0, 0, 0.8, 6, 0, 16, 10)]  # IoU with A = 4/16
    r = M.froc_matches(ds_from(gts, dts, 1))
    np.testing.assert_array_equal(r.tp, [True, False])


# ---------------------------------------------------------------- IoBB
def test_iobb_accuracy_hand_case():
    gts = [(0, 0, 0, 0, 100, 100), (1, 0, 0, 0, 10, 10)]
    # detection half inside box 0: intersection / detection area = 0.5 (not > 0.5)
    dts = [(0, 0, 0.9, 50, 0, 150, 100), (1, 0, 0.1, 0, 0, 10, 10)]  # second below threshold
    acc = M.iobb_accuracy(ds_from(gts, dts, 2), 0.3)
    np.testing.assert_array_equal(acc[:, 0], [0.5, 0.5, 0.0, 0.0, 0.0])


# ---------------------------------------------------------------- image level
def test_image_level_hand_counts():
    s = np.array([0.9, 0.3, 0.29, 0.1, 0.5, 0.0])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    r = M.image_level_metrics(s, y, 0.3)
    assert (r["tp"][0], r["fp"][0], r["tn"][0], r["fn"][0]) == (2, 1, 2, 1)  # 0.3 is positive
    for k in ("sensitivity", "specificity", "ppv", "npv", "f1"):
        assert r[k][0] == pytest.approx(2 / 3), k
    # AUROC by hand: pairs (pos > neg): 0.9>all 3, 0.3>0.1,0.0, 0.29>0.1,0.0 -> 7 of 9
    assert r["auroc"][0] == pytest.approx(7 / 9)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_brute_force_pairs(seed):
    rng = np.random.default_rng(seed)
    s = np.round(rng.random(60), 1)  # many ties
    y = rng.random(60) < 0.4
    w = rng.integers(0, 3, size=(3, 60)).astype(float)
    num = den = 0
    for i in np.flatnonzero(y):
        for j in np.flatnonzero(~y):
            num += (s[i] > s[j]) + 0.5 * (s[i] == s[j])
            den += 1
    assert M.auroc(s, y)[0] == pytest.approx(num / den)
    for b in range(3):  # weights = duplicated images
        idx = np.repeat(np.arange(60), w[b].astype(int))
        assert M.auroc(s, y, w)[b] == pytest.approx(M.auroc(s[idx], y[idx])[0])


def test_image_scores_max_per_class_and_zero_without_boxes():
    ds = ds_from(
        [(0, 1, 0, 0, 5, 5)],
        [(0, 1, 0.4, 0, 0, 5, 5), (0, 1, 0.7, 1, 1, 5, 5), (1, 0, 0.2, 0, 0, 5, 5)],
        3,
        2,
    )
    s, y = M.image_scores(ds)
    np.testing.assert_array_equal(s, [[0, 0.7], [0.2, 0], [0, 0]])
    np.testing.assert_array_equal(y, [[False, True], [False, False], [False, False]])


# ---------------------------------------------------------------- bootstrap
def duplicate_images(ds, w):
    """The set with image i repeated w[i] times (what a bootstrap weight row means)."""
    new_index = np.cumsum(np.r_[0, w[:-1]]).astype(int)
    gi, di = [], []
    for name in ("gt", "dt"):
        img = getattr(ds, f"{name}_image")
        rows, imgs = [], []
        for r in range(len(img)):
            for k in range(int(w[img[r]])):
                rows.append(r)
                imgs.append(new_index[img[r]] + k)
        (gi if name == "gt" else di).append((np.array(rows, int), np.array(imgs, int)))
    (gr, gim), (dr, dim) = gi[0], di[0]
    return M.DetectionSet(
        int(w.sum()),
        ds.num_classes,
        gim,
        ds.gt_class[gr],
        ds.gt_boxes[gr],
        dim,
        ds.dt_class[dr],
        ds.dt_boxes[dr],
        ds.dt_scores[dr],
    )


def test_weighted_metrics_equal_metrics_of_duplicated_images():
    gt, dets = random_coco(3, n_images=8, crowd=False, ties=False)
    ds = to_detection_set(gt, dets)
    W = M.bootstrap_weights(np.arange(8), 4, seed=1)
    vp, vm = M.voc_ap(ds, weights=W)
    fr = M.froc(ds, weights=W)
    for b in range(4):
        dup = duplicate_images(ds, W[b].astype(int))
        rp, rm = M.voc_ap(dup)
        np.testing.assert_allclose(vp[b], rp[0], atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(fr["sensitivity"][b], M.froc(dup)["sensitivity"][0], atol=1e-12)


def test_bootstrap_weights_resample_patients():
    patients = ["a", "a", "b", "c", "c", "c"]
    W = M.bootstrap_weights(patients, 200, seed=3)
    assert W.shape == (200, 6)
    np.testing.assert_array_equal(W[:, 0], W[:, 1])  # same patient, same weight
    np.testing.assert_array_equal(W[:, 3], W[:, 5])
    # three patients drawn per resample
    np.testing.assert_array_equal(W[:, [0, 2, 3]].sum(1), 3)
    np.testing.assert_array_equal(W, M.bootstrap_weights(patients, 200, seed=3))
    assert not np.array_equal(W, M.bootstrap_weights(patients, 200, seed=4))


def test_bootstrap_ci_reproducible_and_contains_point_estimate():
    gt, dets = random_coco(11, n_images=40, n_classes=2, crowd=False, ties=False)
    ds = to_detection_set(gt, dets)
    names = ["c0", "c1"]
    pid = np.arange(40) // 2
    a = compute_medical_metrics(ds, names, bootstrap=300, seed=5, patient_ids=pid).metrics
    b = compute_medical_metrics(ds, names, bootstrap=300, seed=5, patient_ids=pid).metrics
    c = compute_medical_metrics(ds, names, bootstrap=300, seed=6, patient_ids=pid).metrics
    assert a["ci95"] == b["ci95"]
    assert a["ci95"] != c["ci95"]
    checks = {
        "voc_map40": a["voc_map40"],
        "froc.cpm": a["froc"]["cpm"],
        "image_level.macro.sensitivity": a["image_level"]["macro"]["sensitivity"],
        "image_level.any_finding.auroc": a["image_level"]["any_finding"]["auroc"],
        "image_level.per_class.c0.specificity": a["image_level"]["per_class"]["c0"]["specificity"],
    }
    for k, v in checks.items():
        lo, hi = a["ci95"][k]
        assert lo <= v <= hi, (k, lo, v, hi)
    assert a["settings"]["bootstrap_unit"] == "patient"


# ---------------------------------------------------------------- degenerate inputs
def test_no_detections_at_all():
    ds = ds_from([(0, 0, 0, 0, 10, 10)], [], 2, 2)
    m = compute_medical_metrics(ds, ["a", "b"], bootstrap=20).metrics
    assert m["coco"]["AP"] == 0.0 and m["voc_map40"] == 0.0
    assert m["froc"]["sensitivity"] == [0.0] * 7 and m["froc"]["cpm"] == 0.0
    a = m["image_level"]["per_class"]["a"]
    assert (a["tp"], a["fp"], a["tn"], a["fn"]) == (0, 0, 1, 1)
    assert a["sensitivity"] == 0.0 and a["specificity"] == 1.0 and np.isnan(a["ppv"])
    assert a["auroc"] == 0.5  # every image scores 0: all pairs tie
    assert np.isnan(m["coco"]["per_class"]["b"]["AP"])  # class without boxes


def test_class_without_boxes_and_image_without_boxes():
    # class 1 has no boxes; image 1 has no boxes but a class-0 detection (a FP per image)
    ds = ds_from(
        [(0, 0, 0, 0, 10, 10)],
        [(0, 0, 0.9, 0, 0, 10, 10), (1, 0, 0.8, 0, 0, 10, 10), (0, 1, 0.5, 0, 0, 10, 10)],
        2,
        2,
    )
    m = compute_medical_metrics(ds, ["a", "b"]).metrics
    assert np.isnan(m["voc_ap40"]["b"]) and m["voc_map40"] == 1.0  # mean over classes with boxes
    assert m["coco"]["AP"] == pytest.approx(m["coco"]["per_class"]["a"]["AP"])
    b = m["image_level"]["per_class"]["b"]
    assert np.isnan(b["sensitivity"]) and np.isnan(b["auroc"]) and b["specificity"] == 0.5
    assert (
        m["image_level"]["macro"]["specificity"]
        == m["image_level"]["per_class"]["a"]["specificity"]
    )  # macro over classes with positives only
    # FROC: hit at 0.9; the b detection (0.5) and the image-1 detection (0.8) are FPs over 2 images
    assert m["froc"]["sensitivity"] == [1.0] * 7


def test_no_boxes_anywhere_gives_nan_not_crash():
    ds = ds_from([], [(0, 0, 0.9, 0, 0, 10, 10)], 3, 1)
    m = compute_medical_metrics(ds, ["a"], bootstrap=10).metrics
    assert np.isnan(m["coco"]["AP"]) and np.isnan(m["voc_map40"]) and np.isnan(m["froc"]["cpm"])
    assert m["image_level"]["per_class"]["a"]["fp"] == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_curve_equals_scikit_learn(seed):
    from sklearn.metrics import roc_curve as sk_roc_curve

    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200) * 0.5 + 0.3 * y, 2)  # ties
    fpr, tpr = M.roc_curve(s, y)
    ref_fpr, ref_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    assert np.array_equal(fpr, ref_fpr) and np.array_equal(tpr, ref_tpr)
