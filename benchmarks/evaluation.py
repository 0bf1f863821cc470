"""Benchmark task ``eval``: the full CXREvaluator computation vs pycocotools' COCOeval alone.

Row ``eval_vs_pycocotools``: ``ours`` = seconds of ``CXREvaluator.evaluate()`` (COCO AP,
mAP@0.4, IoBB, FROC, image-level metrics, operating points; no files, no bootstrap — the
default config) on a synthetic set of 5,000 images x 100 detections; ``peer`` = seconds of
pycocotools ``COCOeval`` evaluate + accumulate + summarize on the same GT and on the
predictions as the evaluator writes them (``predictions.json``). Both repeated alternately; the
row also records that the COCO numbers are identical (max |difference| of the precision array
and the six AP stats) and the time of 1,000 images x 100 detections with 1,000 bootstrap
resamples.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time

import numpy as np

from .timing import BENCHMARK_REGISTRY, result_row, time_alternating

__all__ = ["eval_vs_pycocotools", "synthetic_eval_set"]

logger = logging.getLogger(__name__)

NUM_CLASSES = 8


def synthetic_eval_set(num_images: int, dets_per_image: int = 100, seed: int = 0):
    """Dataset dicts (XYWH_ABS boxes, 1024 px images, 0-3 boxes, 40% without any, 2 images per
    patient) and per-image prediction records (XYXY_ABS): 3 jittered hits per box with higher
    scores, the rest random boxes of random classes."""
    from detectron2.structures import BoxMode

    rng = np.random.default_rng(seed)
    dicts, preds = [], []
    for i in range(num_images):
        n_gt = 0 if rng.random() < 0.4 else int(rng.integers(1, 4))
        wh = rng.uniform(20, 300, (n_gt, 2))
        xy = rng.uniform(0, 1024 - 300, (n_gt, 2))
        cls = rng.integers(0, NUM_CLASSES, n_gt)
        annos = [
            {
                "bbox": [float(v) for v in (*xy[j], *wh[j])],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": int(cls[j]),
            }
            for j in range(n_gt)
        ]
        hits = min(3 * n_gt, dets_per_image)
        src = np.repeat(np.arange(n_gt), 3)[:hits]
        hx = xy[src] + rng.normal(0, 0.08, (hits, 2)) * wh[src]
        hw = wh[src] * rng.uniform(0.8, 1.25, (hits, 2))
        n_rand = dets_per_image - hits
        rw = rng.uniform(20, 300, (n_rand, 2))
        rx = rng.uniform(0, 1024 - 300, (n_rand, 2))
        xywh = np.r_[np.c_[hx, hw], np.c_[rx, rw]]
        scores = np.r_[rng.beta(4, 2, hits), rng.beta(1.5, 4, n_rand)]
        classes = np.r_[
            np.where(rng.random(hits) < 0.85, cls[src], rng.integers(0, 8, hits)),
            rng.integers(0, NUM_CLASSES, n_rand),
        ]
        boxes = np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]
        dicts.append(
            {
                "image_id": i,
                "file_name": f"synthetic_{i}.png",
                "height": 1024,
                "width": 1024,
                "patient_id": f"p{i // 2}",
                "annotations": annos,
            }
        )
        preds.append({"image_id": i, "boxes": boxes, "scores": scores, "classes": classes})
    return dicts, preds


def _register(name: str, dicts: list) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(
        thing_classes=[f"class{k}" for k in range(NUM_CLASSES)], evaluator_type="cxr"
    )


def _evaluator(name: str, bootstrap: int, preds: list):
    from cxr.evaluation import CXREvaluator

    ev = CXREvaluator(name, None, bootstrap=bootstrap, plots=False, distributed=False)
    ev.reset()
    ev.add_predictions(preds)
    return ev


def _pycocotools_run(name: str, results: list):
    """A callable running COCOeval evaluate + accumulate + summarize (silenced) on ``results``
    (COCO detection results, XYWH_ABS) against the registered data set ``name`` as COCO ground
    truth (cxr's export: the category ids the evaluator's results use); it returns the
    COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from cxr.apps.coco_json import dataset_to_coco

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset_to_coco(name)
        gt.createIndex()
        dt = gt.loadRes(results)

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            e = COCOeval(gt, dt, "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
        return e

    return run


def _coco_max_abs_diff(ev, ours: dict, peer) -> tuple[float, float]:
    """(max |difference| of the precision arrays, of the six AP stats) ours vs pycocotools."""
    ours_prec = ev.last_result.coco["precision"]
    diff_prec = float(np.max(np.abs(ours_prec - peer.eval["precision"][..., -1])))
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    diff_stats = max(
        abs(ours["cxr"][k] - peer.stats[i]) for i, k in enumerate(keys) if peer.stats[i] != -1
    )
    return diff_prec, float(diff_stats)


def _bootstrap_seconds(name: str, num_images: int = 1000, resamples: int = 1000) -> float:
    """Seconds of one evaluation with ``resamples`` bootstrap resamples on ``num_images``."""
    dicts, preds = synthetic_eval_set(num_images, seed=1)
    _register(name, dicts)
    ev = _evaluator(name, resamples, preds)
    t0 = time.perf_counter()
    ev.evaluate()
    return time.perf_counter() - t0


@BENCHMARK_REGISTRY.register_as("eval")
def eval_vs_pycocotools(args) -> list[dict]:
    """``--task eval``: see the module docstring. Repeats are capped at 3 (pycocotools takes
    tens of seconds per run); one untimed warm-up of ours."""
    n_images = int(getattr(args, "eval_images", 0) or 5000)
    repeats = max(1, min(int(args.repeats), 3))
    logging.getLogger("cxr.evaluation").setLevel(logging.WARNING)
    dicts, preds = synthetic_eval_set(n_images)
    name = "cxr_bench_eval"
    _register(name, dicts)
    run_peer = _pycocotools_run(name, _evaluator(name, 0, preds).coco_results(preds))
    last = {}

    def run_ours():
        last["ev"] = _evaluator(name, 0, preds)
        last["ours"] = last["ev"].evaluate()

    if args.warmup:
        run_ours()
    stats = time_alternating(
        {"ours": run_ours, "peer": lambda: last.update(peer=run_peer())}, 0, repeats
    )
    diff_prec, diff_stats = _coco_max_abs_diff(last["ev"], last["ours"], last["peer"])
    identical = diff_prec == 0.0 and diff_stats == 0.0
    if not identical:
        logger.error(
            "COCO numbers differ from pycocotools: precision %g, stats %g", diff_prec, diff_stats
        )
    boot_s = _bootstrap_seconds(name + "_1k")
    ours, peer = stats["ours"], stats["peer"]
    logger.info(
        "eval: ours %s, pycocotools %s, ratio %.3f; COCO identical: %s; "
        "1k images + 1000 bootstrap: %.2f s",
        ours.summary(1, "s"), peer.summary(1, "s"), ours.median / peer.median, identical, boot_s,
    )  # fmt: skip
    return [
        result_row(
            "eval_vs_pycocotools", ours.median, peer.median, "s", better="lower",
            images=n_images, detections=int(sum(len(p["scores"]) for p in preds)),
            repeats=repeats, ours_runs=ours.times, peer_runs=peer.times,
            coco_identical=identical, coco_max_abs_diff=max(diff_prec, diff_stats),
            goal_ratio=2.0, bootstrap_1000_images_1000_resamples_s=boot_s,
        )
    ]  # fmt: skip
