"""The demo driver: its commands, and run.json / the last lines from a run of recorded steps."""

import json
import os
import sys

import pytest

from cxr.apps.demo import DemoSettings, cpu_model, demo_steps, run_demo

# Stands in for the interpreter: records each command line; for tools/train_net.py writes what
# training with validation writes (model_best.pth and its operating points, thresholds.json, in
# OUTPUT_DIR) unless {train_writes} is False; for tools/eval.py writes the metrics.json that a
# real evaluation writes (AP50 0.2 for the starting weights, else 0.31).
RECORDER = """#!{python}
import json, os, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "tools/train_net.py" and {train_writes}:
    out = sys.argv[sys.argv.index("OUTPUT_DIR") + 1]
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, "model_best.pth"), "wb").close()
    json.dump({{"format": "cxr-thresholds/1", "thresholds": {{"Mass": 0.42, "Nodule": 0.17}},
               "meta": {{"dataset": "phantom_nih_val"}}}},
              open(os.path.join(out, "thresholds.json"), "w"))
if sys.argv[1] == "tools/eval.py":
    out = sys.argv[sys.argv.index("--output") + 1]
    os.makedirs(out, exist_ok=True)
    ap50 = 0.2 if out.endswith("eval_start") else 0.31
    json.dump({{"coco": {{"AP50": ap50}}}}, open(os.path.join(out, "metrics.json"), "w"))
"""


def test_steps_of_the_default_and_full_demo():
    steps = demo_steps(DemoSettings(python="py", opts=("SOLVER.MAX_ITER", "10")))
    names = [n for n, _ in steps]
    assert names == [
        "render phantom",
        "evaluate starting weights",
        "train",
        "evaluate trained model",
    ]
    cmds = dict(steps)
    assert cmds["render phantom"][:2] == ["py", "datasets/prepare_phantom.py"]
    start = cmds["evaluate starting weights"]
    assert start[start.index("--checkpoint") + 1] == "datasets/weights/retinanet_demo_phantom.pth"
    assert start[start.index("--config-file") + 1] == "configs/phantom/retinanet_demo.yaml"
    assert cmds["train"][-2:] == ["SOLVER.MAX_ITER", "10"]
    final = cmds["evaluate trained model"]
    # the best checkpoint on phantom_nih_val, scored at the operating points chosen there
    assert final[final.index("--checkpoint") + 1] == "output/demo/model_best.pth"
    assert final[final.index("--thresholds") + 1] == "output/demo/thresholds.json"
    assert final[final.index("--dataset") + 1] == "phantom_nih_test"
    assert "--thresholds" not in start
    full = DemoSettings(python="py", start_weights="")
    assert [n for n, _ in demo_steps(full)] == ["render phantom", "train", "evaluate trained model"]


def _recorder(tmp_path, train_writes: bool) -> tuple[str, str]:
    """(path of a RECORDER interpreter, path of its command log)."""
    log = str(tmp_path / "commands.jsonl")
    py = tmp_path / "python"
    py.write_text(RECORDER.format(python=sys.executable, log=log, train_writes=train_writes))
    py.chmod(0o755)
    return str(py), log


def test_run_writes_run_json_and_ends_with_the_report(tmp_path):
    py, log = _recorder(tmp_path, train_writes=True)
    out = str(tmp_path / "demo")
    lines = []
    rec = run_demo(
        DemoSettings(output=out, python=py), echo=lambda *a, **k: lines.append(" ".join(a))
    )
    ran = [json.loads(x)[0] for x in open(log)]
    assert ran == [
        "datasets/prepare_phantom.py",
        "tools/eval.py",
        "tools/train_net.py",
        "tools/eval.py",
    ]
    saved = json.load(open(os.path.join(out, "run.json")))
    assert saved == json.loads(json.dumps(rec))
    assert saved["start_AP50"] == 0.2 and saved["final_AP50"] == 0.31
    assert abs(saved["AP50_gain"] - 0.11) < 1e-12
    assert saved["torch_threads"] >= 1 and saved["cpu_model"] == cpu_model() != ""
    assert len(saved["steps"]) == 4 and saved["wall_time_s"] >= 0
    assert saved["operating_points"] == {"Mass": 0.42, "Nodule": 0.17}
    assert saved["model"] == os.path.join(out, "model_best.pth")
    assert saved["thresholds_file"] == os.path.join(out, "thresholds.json")
    assert lines[-1].split() == ["Report:", os.path.join(out, "eval", "report.html")]
    assert any(x.startswith("Demo wall time") for x in lines)
    assert any(x.endswith("Mass 0.420, Nodule 0.170") for x in lines)


def test_training_without_validation_stops_before_scoring_the_test_split(tmp_path):
    py, log = _recorder(tmp_path, train_writes=False)
    out = str(tmp_path / "demo")
    with pytest.raises(FileNotFoundError, match="model_best.pth was not written.*EVAL_PERIOD"):
        run_demo(DemoSettings(output=out, python=py), echo=lambda *a, **k: None)
    ran = [json.loads(x)[0] for x in open(log)]
    assert ran[-1] == "tools/train_net.py"  # the test split is not scored
    assert not os.path.exists(os.path.join(out, "run.json"))


def test_demo_config_validates_often_enough_for_curves_and_a_best_checkpoint():
    from cxr.engine import setup_config

    cfg = setup_config(DemoSettings.config, [])
    assert cfg.DATASETS.TEST == ("phantom_nih_val",)
    assert cfg.TEST.BEST_METRIC  # model_best.pth and thresholds.json beside it
    # at least 3 validation points per AP curve in TensorBoard (the last at MAX_ITER)
    assert 0 < cfg.TEST.EVAL_PERIOD and cfg.SOLVER.MAX_ITER // cfg.TEST.EVAL_PERIOD >= 3


def test_profile_parts_add_up_to_the_iteration(tiny_dataset):
    from cxr.apps.demo import PROFILE_PARTS, profile_training
    from cxr.engine import setup_config

    opts = ["DATASETS.TRAIN", f"('{tiny_dataset}',)", "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    opts += ["MODEL.RETINANET.NUM_CLASSES", "2", "SOLVER.IMS_PER_BATCH", "2"]
    opts += ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64"]
    opts += ["DATALOADER.SAMPLER_TRAIN", "TrainingSampler"]
    cfg = setup_config("configs/phantom/retinanet_demo_finetune.yaml", opts)
    t = profile_training(cfg, iterations=2, warmup=1)
    assert set(t) == set(PROFILE_PARTS) | {"total"}
    assert all(t[k] > 0 for k in ("trunk", "fpn", "head", "losses", "backward"))
    parts = sum(t[k] for k in PROFILE_PARTS if k not in ("trunk", "fpn", "head", "preprocess"))
    # losses wraps the loss computation only; trunk/fpn/head/preprocess run inside model(data)
    inside = t["trunk"] + t["fpn"] + t["head"] + t["preprocess"]
    assert 0.8 * t["total"] <= parts + inside <= 1.05 * t["total"]
