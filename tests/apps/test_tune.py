"""tools/tune.py: trials through the Trainer, a real prune, a failed trial, a rerun that
continues, best.yaml for tools/train_net.py, two workers on one storage, and bad input."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from cxr.apps.tune import SpaceError, StorageError, TuneSettings, load_space, run_tune
from cxr.config import load_config
from cxr.engine import setup_config

from ..engine.helpers import REPO, TINY_CONFIG, tiny_opts
from ..tools.util import load_tool

GAMMA = "MODEL.RETINANET.FOCAL_LOSS_GAMMA"


def _opts(dataset, max_iter):
    # The training loss of every iteration is the reported value; no test set (no evaluation).
    return tiny_opts(dataset, "unused", max_iter, "DATASETS.TEST", "()", "TEST.BEST_METRIC", "")


def _settings(tmp_path, dataset, space, trials, **kw):
    return TuneSettings(TINY_CONFIG, str(space), trials, "s", str(tmp_path / "tune"),
                        metric="total_loss", direction="minimize",
                        opts=_opts(dataset, 2), **kw)  # fmt: skip


def test_prune_fail_rerun_and_best_yaml(tiny_dataset, tmp_path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    space = tmp_path / "space.yaml"
    space.write_text(f"{GAMMA}: {{type: categorical, choices: [2.0, 0.0, -60.0]}}\n")
    s = _settings(tmp_path, tiny_dataset, space, 3)
    os.makedirs(s.output)
    storage = JournalStorage(JournalFileBackend(os.path.join(s.output, "study.journal")))
    study = optuna.create_study(storage=storage, study_name="s", direction="minimize")
    # Two normal trials; then gamma 0 (plain BCE over every anchor: a far larger loss, pruned at its first report against their median); then gamma -60 (the loss
    # overflows: detectron2 stops with FloatingPointError: the trial FAILs).
    for g in (2.0, 2.0, 0.0, -60.0):
        study.enqueue_trial({GAMMA: g})
    run_tune(s)
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "WAITING"]
    # A rerun continues the same study up to the new total: the fourth trial, which fails.
    s.trials = 4
    run_tune(s)
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert trials[0].value == trials[1].value  # same seed, same overrides
    assert sorted(trials[0].intermediate_values) == [0, 1]  # a report per iteration
    assert trials[0].intermediate_values[1] == trials[0].value
    assert list(trials[2].intermediate_values) == [0]  # pruned on its first report:
    assert trials[2].intermediate_values[0] > 1.1 * trials[0].intermediate_values[0]
    assert "FloatingPointError" in trials[3].user_attrs["error"]
    assert trials[0].user_attrs["overrides"] == [GAMMA, "2.0"]
    assert trials[0].user_attrs["metrics"]["total_loss"] == trials[0].value
    assert trials[0].user_attrs["overrides"] == [GAMMA, "2.0"]
    for n in range(4):
        assert trials[n].user_attrs["output_dir"] == os.path.join(s.output, f"trial_{n}")
    rows = list(csv.DictReader(open(os.path.join(s.output, "trials.csv"))))
    assert [r["state"] for r in rows][:4] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert rows[0]["params"] == f"{GAMMA}=2.0" and float(rows[0]["value"]) == trials[0].value
    for png in ("history.png", "intermediate.png"):
        assert open(os.path.join(s.output, png), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # best.yaml: the best trial's full config, which tools/train_net.py takes.
    best = os.path.join(s.output, "best.yaml")
    best_trial = min((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    cfg = setup_config(best)
    assert cfg.OUTPUT_DIR == best_trial.user_attrs["output_dir"]
    assert cfg.dump() == setup_config(os.path.join(cfg.OUTPUT_DIR, "config.yaml")).dump()
    train_net = load_tool("train_net")
    weights = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    args = train_net.argument_parser().parse_args(
        [
            "--config-file",
            best,
            "--eval-only",
            "MODEL.WEIGHTS",
            weights,
            "DATASETS.TEST",
            f"('{tiny_dataset}',)",
        ]
    )
    assert "bbox" in train_net.main(args)


def test_two_workers_share_one_storage(tmp_path):
    out = tmp_path / "tune"
    space = tmp_path / "space.yaml"
    space.write_text("SOLVER.BASE_LR: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n")
    journal = str(tmp_path / "shared.journal")
    argv = ["--config-file", TINY_CONFIG, "--space", str(space), "--trials", "3", "--study",
            "two", "--output", str(out), "--storage", journal, "--metric", "total_loss",
            "--direction", "minimize", "--pruner", "none", "--no-plots",
            *_opts("cxr_test_tiny", 1)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.apps.tune_subprocess",
                          str(tmp_path / f"img{i}"), "--", *argv], cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=500)
        assert p.returncode == 0, err.decode()[-3000:]
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(journal))
    trials = optuna.load_study(study_name="two", storage=storage).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2]
    assert all(t.state.name == "COMPLETE" for t in trials)
    dirs = [t.user_attrs["output_dir"] for t in trials]
    assert len(set(dirs)) == 3 and all(
        os.path.isfile(os.path.join(d, "model_final.pth")) for d in dirs
    )
    assert sorted(os.listdir(out)) == sorted(
        ["trial_0", "trial_1", "trial_2", "trials.csv", "best.yaml", "log.txt"]
    )
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials} <= {str(p.pid) for p in procs}


def test_shipped_space_loads():
    cfg = load_config(os.path.join(REPO, "configs/phantom/retinanet_demo.yaml"))
    space = load_space(os.path.join(REPO, "configs/tune/retinanet_space.yaml"), cfg)
    assert space["SOLVER.BASE_LR"]["log"] is True


def test_bad_input(tmp_path, tiny_dataset):
    cfg = load_config(TINY_CONFIG)
    bad = tmp_path / "bad.yaml"
    cases = {
        "SOLVER.BASE_RATE: {type: float, low: 0.1, high: 1.0}": "SOLVER.BASE_RATE: not a config key",
        "SOLVER.BASE_LR: {type: float, low: 0.1, high: 0.01}": "empty range: low 0.1 > high 0.01",
        "SOLVER.BASE_LR: {type: uniform, low: 0.1, high: 1}": "field 'type' must be one of",
        "SOLVER.BASE_LR: {type: float, low: 0.0, high: 1, log: true}": "'low' must be > 0",
        "SOLVER.BASE_LR: {type: categorical, choices: []}": "'choices' must be a non-empty list",
        "SOLVER.BASE_LR: {type: float, low: 0.1, hihg: 1}": "unknown field",
    }
    for text, msg in cases.items():
        bad.write_text(text + "\n")
        with pytest.raises(SpaceError, match=msg) as e:
            load_space(str(bad), cfg)
        assert str(bad) in str(e.value)
    good = tmp_path / "space.yaml"
    good.write_text("SOLVER.BASE_LR: {type: float, low: 1.0e-4, high: 1.0e-3}\n")
    s = _settings(
        tmp_path, tiny_dataset, good, 1, storage=str(tmp_path / "no" / "dir" / "s.journal")
    )
    with pytest.raises(StorageError, match="does not exist"):
        run_tune(s)
    s.storage = f"sqlite:///{tmp_path}/no/dir/s.db"
    with pytest.raises(StorageError, match="cannot open the study storage"):
        run_tune(s)
    # A bad space file leaves an existing study untouched.
    s.storage = ""
    journal = os.path.join(s.output, "study.journal")
    with open(journal, "wb") as f:
        f.write(b"")
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.create_study(storage=JournalStorage(JournalFileBackend(journal)), study_name="s")
    before = open(journal, "rb").read()
    s.space = str(bad)
    with pytest.raises(SpaceError):
        run_tune(s)
    assert open(journal, "rb").read() == before
