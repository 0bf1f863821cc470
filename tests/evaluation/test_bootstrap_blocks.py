"""Bootstrap CIs computed in blocks of resamples (behind the progress bar) equal one pass."""

import numpy as np

from cxr.evaluation import metrics as M
from cxr.evaluation.medical import compute_medical_metrics

from .test_html_report import _random_set


def test_blockwise_bootstrap_equals_the_whole_weight_matrix():
    ds = _random_set(np.random.default_rng(3))
    names = ["a", "b", "c"]
    res = compute_medical_metrics(ds, names, bootstrap=130, seed=5)  # blocks of 50, 50, 30
    W = M.bootstrap_weights(np.arange(ds.num_images), 130, 5)
    vp, vm = M.voc_ap(ds, 0.4, W, M.voc_matches(ds, 0.4))
    cpm = M.froc(ds, 0.4, M.FROC_FPS_PER_IMAGE, W, M.froc_matches(ds, 0.4))["cpm"]
    scores, labels = M.image_scores(ds)
    sens = M.image_level_metrics(scores[:, 1], labels[:, 1], 0.3, W)["sensitivity"]
    ci = res.metrics["ci95"]
    for key, samples in (
        ("voc_map40", vm),
        ("voc_ap40.c", vp[:, 2]),
        ("froc.cpm", cpm),
        ("image_level.per_class.b.sensitivity", sens),
    ):
        assert ci[key] == [float(x) for x in M.percentile_ci(samples)], key
