"""Side-by-side benchmarks of our EfficientDet configs against the ``effdet`` package's models.

Rows (``ratio`` = ours / peer, lower is better):

- ``inference_d0_vs_effdet_d0``: ``configs/nih/efficientdet_d0.yaml`` (detectron2
  ``build_model``, eval mode, no grad) vs effdet ``tf_efficientdet_d0`` in its ``predict``
  bench, batch 1, 512 x 512, 8 classes, random weights (``pretrained_backbone=False``).
- ``inference_lite0_vs_effdet_lite0``: ``configs/nih/efficientdet_lite0.yaml`` vs effdet
  ``tf_efficientdet_lite0``, both at 320 x 320 (effdet's Lite0 size; ours set to it by config
  overrides).
- ``train_step_d0_vs_effdet_d0``: forward + backward + ``SGD`` step, batch 4, 512 x 512, the
  same two boxes per image (effdet's ``DetBenchTrain`` gets them as yxyx with 1-based classes,
  as its anchor labeler expects).

Same work: both models get the same pixels (ours as detectron2 dicts with 0-255 images and
normalizes inside, effdet the same tensor normalized beforehand); both run their own
post-processing. effdet's ``predict`` bench always sends its top 5,000 candidates to NMS, so
ours runs with ``MODEL.RETINANET.SCORE_THRESH_TEST 0`` (every level's top 1,000 candidates go
to NMS, the most work it can do); the row also records ours at the config's own threshold
(``ours_config_thresh``), which with random weights filters almost everything. Our model is
timed as it is meant to serve: ``fuse_for_inference()`` (BatchNorm folded into the convs) after
``eval()``; the row also records the unfused model (``ours_unfused_ms``). Calls alternate
(ours, peer, ours, ...) in one process with one torch thread count; medians are reported, and
the minimums too (``ratio_of_min``: less sensitive to other load on the machine).

``effdet`` is a benchmark-only dependency (``requirements-bench.txt``, installed by
``make bench``); it is imported lazily here and nowhere else.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import warnings

import torch

from .timing import BENCHMARK_REGISTRY, TimingStats, result_row, time_alternating

__all__ = [
    "NUM_CLASSES",
    "build_ours",
    "effdet_model",
    "import_effdet",
    "inference_d0_vs_effdet_d0",
    "inference_lite0_vs_effdet_lite0",
    "train_step_d0_vs_effdet_d0",
]

logger = logging.getLogger(__name__)

NUM_CLASSES = 8  # NIH ChestX-ray14 box classes
# benchmarks/ sits beside configs/ in the source tree (it is not installed with cxr)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO_ROOT, "configs")
D0_CONFIG = os.path.join(CONFIGS, "nih", "efficientdet_d0.yaml")
LITE0_CONFIG = os.path.join(CONFIGS, "nih", "efficientdet_lite0.yaml")
# Our configs normalize with mean 128 / std 64 on every channel; the peer gets the same input.
_MEAN, _STD = 128.0, 64.0


def import_effdet():
    """The ``effdet`` module, or an ImportError saying how to install it."""
    try:
        import effdet
    except ImportError as e:
        raise ImportError(
            "the effdet comparisons need the benchmark-only requirements: run `make bench` "
            "(or `.venv/bin/pip install -r requirements-bench.txt`)"
        ) from e
    return effdet


def effdet_model(name: str, size: int, bench_task: str, device: str = "cpu") -> torch.nn.Module:
    """effdet ``name`` wrapped in its ``predict`` or ``train`` bench, random weights, 8 classes.

    Args:
        name: effdet model name, e.g. "tf_efficientdet_d0".
        size: square input size in pixels (effdet builds its anchors for it).
        bench_task: "predict" (eval mode) or "train" (train mode, with anchor labeler).
    """
    effdet = import_effdet()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # effdet calls the deprecated torch.jit.script
        model = effdet.create_model(
            name, bench_task=bench_task, num_classes=NUM_CLASSES, pretrained=False,
            pretrained_backbone=False, image_size=(size, size),
            bench_labeler=bench_task == "train",
        )  # fmt: skip
    return model.to(device).train(bench_task == "train")


def build_ours(
    config_file: str, size: int, device: str, train: bool, opts: list[str] | None = None
) -> torch.nn.Module:
    """Our detector from ``config_file`` with train and test sizes set to ``size`` (seeded)."""
    from detectron2.modeling import build_model

    from cxr.config import load_config

    sizes = ["INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size),
             "INPUT.MIN_SIZE_TRAIN", f"({size},)", "INPUT.MAX_SIZE_TRAIN", str(size)]  # fmt: skip
    cfg = load_config(config_file, [*sizes, "MODEL.DEVICE", device, *(opts or [])])
    torch.manual_seed(0)
    return build_model(cfg).train(train)


def _setup(args: argparse.Namespace, default_size: int) -> tuple[int, str]:
    """(input size, device) of a comparison; applies ``args.threads`` when given."""
    threads = int(getattr(args, "threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    return int(getattr(args, "input_size", 0) or default_size), args.device


def _normalized(inputs: list[dict]) -> torch.Tensor:
    return torch.stack([(d["image"] - _MEAN) / _STD for d in inputs])


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _runs_ms(stats: TimingStats) -> list[float]:
    return [round(t * 1000, 2) for t in stats.times]


def _inference_comparison(
    args: argparse.Namespace, name: str, config_file: str, effdet_name: str, default_size: int
) -> list[dict]:
    from .inference import synthetic_inputs

    size, device = _setup(args, default_size)
    opts = list(getattr(args, "opts", None) or [])
    unfused = build_ours(args.config_file or config_file, size, device, False, opts)
    ours = copy.deepcopy(unfused)
    if hasattr(ours, "fuse_for_inference"):
        ours.fuse_for_inference()
    config_thresh = ours.test_score_thresh
    unfused.test_score_thresh = ours.test_score_thresh = 0.0
    peer = effdet_model(effdet_name, size, "predict", device)
    inputs = synthetic_inputs(1, size, NUM_CLASSES, device)
    x = _normalized(inputs)

    def run_ours(thresh: float):
        ours.test_score_thresh = thresh
        return ours(inputs)

    fns = {"ours": lambda: run_ours(0.0), "peer": lambda: peer(x),
           "ours_config_thresh": lambda: run_ours(config_thresh),
           "ours_unfused": lambda: unfused(inputs)}  # fmt: skip
    with torch.no_grad():
        stats = time_alternating(fns, args.warmup, args.repeats, device)
        n_ours = len(run_ours(0.0)[0]["instances"])
        n_peer = int((peer(x)[0, :, 4] > 0).sum())
    ours.test_score_thresh = config_thresh
    logger.info("%s @%d: ours %s | effdet %s", name, size, stats["ours"].summary(),
                stats["peer"].summary())  # fmt: skip
    return [
        result_row(
            name, stats["ours"].median * 1000, stats["peer"].median * 1000, "ms/image", "lower",
            config=os.path.relpath(args.config_file or config_file, REPO_ROOT),
            peer_model=effdet_name, input_size=size, batch=1, device=device,
            threads=torch.get_num_threads(), ours_score_thresh=0.0,
            ours_config_thresh_ms=stats["ours_config_thresh"].median * 1000,
            ours_config_thresh=config_thresh, ours_fused=hasattr(ours, "fuse_for_inference"),
            ours_unfused_ms=stats["ours_unfused"].median * 1000,
            ratio_of_min=min(stats["ours"].times) / min(stats["peer"].times),
            ours_runs_ms=_runs_ms(stats["ours"]),
            peer_runs_ms=_runs_ms(stats["peer"]), ours_detections=n_ours,
            peer_detections=n_peer, ours_params=_params(unfused), peer_params=_params(peer),
        )
    ]  # fmt: skip


@BENCHMARK_REGISTRY.register()
def inference_d0_vs_effdet_d0(args: argparse.Namespace) -> list[dict]:
    """Our D0 vs effdet ``tf_efficientdet_d0``: batch 1, 512 px (``args.input_size``)."""
    return _inference_comparison(
        args, "inference_d0_vs_effdet_d0", D0_CONFIG, "tf_efficientdet_d0", 512
    )


@BENCHMARK_REGISTRY.register()
def inference_lite0_vs_effdet_lite0(args: argparse.Namespace) -> list[dict]:
    """Our Lite0 vs effdet ``tf_efficientdet_lite0``: batch 1, 320 px (``args.input_size``)."""
    return _inference_comparison(
        args, "inference_lite0_vs_effdet_lite0", LITE0_CONFIG, "tf_efficientdet_lite0", 320
    )


def effdet_targets(inputs: list[dict]) -> dict[str, torch.Tensor]:
    """effdet training targets from detectron2 inputs with the same number of boxes each.

    Returns:
        {"bbox": (N, R, 4) boxes as (y1, x1, y2, x2) absolute pixels, "cls": (N, R) classes
        1-based (effdet's anchor labeler subtracts 1; -1 marks padding)}.
    """
    boxes = torch.stack([d["instances"].gt_boxes.tensor for d in inputs])  # XYXY_ABS
    classes = torch.stack([d["instances"].gt_classes for d in inputs])
    return {"bbox": boxes[..., [1, 0, 3, 2]], "cls": (classes + 1).float()}


@BENCHMARK_REGISTRY.register()
def train_step_d0_vs_effdet_d0(args: argparse.Namespace) -> list[dict]:
    """Our D0 vs effdet D0 (``DetBenchTrain``): forward + backward + SGD step, batch 4
    (``args.batch``), 512 px (``args.input_size``), the same two boxes per image."""
    from detectron2.utils.events import EventStorage

    from .inference import synthetic_inputs

    size, device = _setup(args, 512)
    batch = int(getattr(args, "batch", 0) or 4)
    opts = list(getattr(args, "opts", None) or [])
    config_file = args.config_file or D0_CONFIG
    ours = build_ours(config_file, size, device, True, opts)
    peer = effdet_model("tf_efficientdet_d0", size, "train", device)
    inputs = synthetic_inputs(batch, size, NUM_CLASSES, device, with_boxes=True)
    x, target = _normalized(inputs), effdet_targets(inputs)
    # the same plain optimizer for both (detectron2's would add gradient clipping to ours)
    opt = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=4e-5)
           for k, m in (("ours", ours), ("peer", peer))}  # fmt: skip
    last_loss = {}

    def step(key: str):
        loss = sum(ours(inputs).values()) if key == "ours" else peer(x, target)["loss"]
        opt[key].zero_grad(set_to_none=True)
        loss.backward()
        opt[key].step()
        last_loss[key] = float(loss.detach())

    with EventStorage():
        stats = time_alternating(
            {"ours": lambda: step("ours"), "peer": lambda: step("peer")},
            args.warmup, args.repeats, device,
        )  # fmt: skip
    logger.info("train step batch %d @%d: ours %s | effdet %s", batch, size,
                stats["ours"].summary(), stats["peer"].summary())  # fmt: skip
    return [
        result_row(
            "train_step_d0_vs_effdet_d0", stats["ours"].median * 1000,
            stats["peer"].median * 1000, "ms/iter", "lower",
            config=os.path.relpath(config_file, REPO_ROOT),
            peer_model="tf_efficientdet_d0", input_size=size, batch=batch, device=device,
            threads=torch.get_num_threads(), optimizer="SGD(lr=1e-3, momentum=0.9)",
            ratio_of_min=min(stats["ours"].times) / min(stats["peer"].times),
            ours_runs_ms=_runs_ms(stats["ours"]), peer_runs_ms=_runs_ms(stats["peer"]),
            ours_last_loss=last_loss.get("ours"), peer_last_loss=last_loss.get("peer"),
        )
    ]  # fmt: skip
