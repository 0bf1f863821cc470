"""Optuna searches over cxr configs: the body of ``tools/tune.py``.

Each trial samples ``KEY VALUE`` overrides from a search-space YAML, trains through the same
:class:`cxr.engine.Trainer` into ``<output>/trial_<n>`` and reports every new value of the metric
(an evaluation such as ``cxr/AP50``, or a validation loss ``val/total_loss``) as an intermediate
value, so that the pruner stops bad trials. The objective is the metric's last value. A trial's
overrides, metrics, output folder and worker are stored on it (user attributes); a trial that
raises is marked FAIL with its error and the search goes on.

Storage: ``--storage`` an RDB URL (``sqlite:///study.db``, ``postgresql://...``) or a journal
file path (``*.journal``, e.g. on a shared file system); default ``<output>/study.journal``.
Workers on several machines join one study through the same storage; ``--trials N`` is the
total of the study (finished, failed and running trials count), so a rerun continues it.

At the end: ``best.yaml`` (the best trial's full config; ``tools/train_net.py`` takes it),
``trials.csv`` (number, state, params, value) and Optuna's history / importance plots as PNGs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml
from cxr_runtime.optional import import_optional
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from ..config import CfgNode
from ..engine import Trainer
from ..engine.defaults import setup_config
from ..fileio import write_csv_atomic, write_text_atomic
from ..registry import NamedRegistry


__all__ = ["SpaceError", "TuneSettings", "load_space", "open_study", "run_tune", "suggest"]

logger = logging.getLogger(__name__)


def _optuna(module: str = "optuna"):
    """``module`` of the optional optuna package; a missing package names its extra."""
    return import_optional(module, "tools/tune.py")

#: distribution type of the space file -> sampler(trial, key, spec)
DISTRIBUTIONS = NamedRegistry("CXR_TUNE_DISTRIBUTION")
#: --pruner name -> factory(max_iter) of an Optuna pruner
PRUNERS = NamedRegistry("CXR_TUNE_PRUNER")
_FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
           "categorical": {"choices"}}  # fmt: skip


class SpaceError(ValueError):
    """A search-space file that cannot be used; the message names the file, key and field."""


@DISTRIBUTIONS.register_as("float")
def _suggest_float(trial, key: str, spec: dict) -> float:
    return trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False),
                               step=spec.get("step"))  # fmt: skip


@DISTRIBUTIONS.register_as("int")
def _suggest_int(trial, key: str, spec: dict) -> int:
    return trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False),
                             step=spec.get("step", 1))  # fmt: skip


@DISTRIBUTIONS.register_as("categorical")
def _suggest_categorical(trial, key: str, spec: dict) -> Any:
    return trial.suggest_categorical(key, spec["choices"])


@PRUNERS.register_as("median")
def _median(max_iter: int):
    optuna = _optuna()

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


@PRUNERS.register_as("hyperband")
def _hyperband(max_iter: int):
    optuna = _optuna()

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_iter))


@PRUNERS.register_as("none")
def _no_pruner(max_iter: int):
    optuna = _optuna()

    return optuna.pruners.NopPruner()


def _check_spec(path: str, key: str, spec: Any) -> None:
    where = f"{path}: {key}"
    if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS.names():
        raise SpaceError(f"{where}: field 'type' must be one of {DISTRIBUTIONS.names()}")
    extra = set(spec) - {"type"} - _FIELDS[spec["type"]]
    if extra:
        raise SpaceError(f"{where}: unknown field(s) {sorted(extra)}")
    if spec["type"] == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise SpaceError(f"{where}: field 'choices' must be a non-empty list")
        return
    for f in ("low", "high"):
        if not isinstance(spec.get(f), (int, float)) or isinstance(spec.get(f), bool):
            raise SpaceError(f"{where}: field '{f}' must be a number")
    if spec["low"] > spec["high"]:
        raise SpaceError(f"{where}: empty range: low {spec['low']} > high {spec['high']}")
    if spec.get("log") and spec["low"] <= 0:
        raise SpaceError(f"{where}: field 'low' must be > 0 with log: true")


def load_space(path: str, cfg: CfgNode) -> dict[str, dict]:
    """Read and check a search-space YAML: ``{CONFIG.KEY: {type, low, high, log, step} |
    {type: categorical, choices}}``; every key must be a key of ``cfg``.

    Raises:
        SpaceError: unknown key, unknown type or field, empty range, bad YAML.
    """
    try:
        with open(path, encoding="utf-8") as f:
            space = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"search space file not found: {path}") from None
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid (safe) YAML: {e}") from None
    if not isinstance(space, dict) or not space:
        raise SpaceError(f"{path}: must be a non-empty mapping of config keys to distributions")
    for key, spec in space.items():
        node = cfg
        for part in str(key).split("."):
            if not isinstance(node, dict) or part not in node:
                raise SpaceError(f"{path}: {key}: not a config key")
            node = node[part]
        _check_spec(path, str(key), spec)
    return space


def suggest(trial, space: dict[str, dict]) -> list[str]:
    """The trial's sampled values as ``KEY VALUE`` overrides (values as Python literals)."""
    out = []
    for key, spec in space.items():
        v = DISTRIBUTIONS.get(spec["type"])(trial, key, spec)
        out += [key, v if isinstance(v, str) else repr(v)]
    return out


@dataclass
class TuneSettings:
    """What ``tools/tune.py`` was asked for (see its ``--help``)."""

    config_file: str
    space: str
    trials: int
    study: str
    output: str
    storage: str = ""
    metric: str = "cxr/AP50"
    direction: str = "maximize"
    pruner: str = "median"
    opts: list = field(default_factory=list)
    plots: bool = True


class ReportHook(HookBase):
    """Reports each new value of ``metric`` in the event storage to the trial; prunes."""

    def __init__(self, trial, metric: str):
        self._trial, self._metric, self._last = trial, metric, -1
        # The prune, kept: an error of another hook's after_train may replace the exception.
        self.pruned: Exception | None = None

    def after_step(self) -> None:
        optuna = _optuna()

        value, it = self.trainer.storage.latest().get(self._metric, (None, -1))
        if it <= self._last or value is None:
            return
        self._last = it
        self._trial.report(float(value), step=int(it))
        if self._trial.should_prune():
            self.pruned = optuna.TrialPruned(f"pruned at iteration {it}: {self._metric} = {value}")
            raise self.pruned


class StorageError(RuntimeError):
    """The study storage cannot be opened (unreachable server, missing folder)."""


def _storage(settings: TuneSettings):
    optuna = _optuna()
    journal = _optuna("optuna.storages.journal")
    JournalFileBackend, JournalStorage = journal.JournalFileBackend, journal.JournalStorage

    url = settings.storage or os.path.join(settings.output, "study.journal")
    if "://" in url:
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
        except Exception as e:  # sqlalchemy's errors for an unreachable / wrong database
            raise StorageError(f"--storage {url}: cannot open the study storage: {e}") from None
    folder = os.path.dirname(os.path.abspath(url))
    if not os.path.isdir(folder):
        raise StorageError(f"--storage {url}: folder {folder} does not exist")
    return JournalStorage(JournalFileBackend(url))


@contextlib.contextmanager
def _study_lock(settings: TuneSettings):
    """Serialises the "room for one more trial?" check of workers sharing a file storage (a
    journal file or SQLite); for server databases the check is not atomic (one extra trial
    may start when two workers ask at the same moment)."""
    url = settings.storage or os.path.join(settings.output, "study.journal")
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
    if "://" in path:
        yield
        return
    with open(path + ".cxr.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_dead_local_trials(study) -> None:
    """RUNNING trials of workers of this host whose process is gone (killed) become FAIL, so
    that a rerun runs them again."""
    TrialState = _optuna("optuna.trial").TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if w_host != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            study._storage.set_trial_user_attr(t._trial_id, "error", "worker process died")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            logger.warning(
                "trial %d: its worker %s is gone; marked FAIL", t.number, t.user_attrs["worker"]
            )


def _next_trial(study, settings: TuneSettings):
    """``study.ask()`` while the study has fewer than ``settings.trials`` trials, else None."""
    TrialState = _optuna("optuna.trial").TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    with _study_lock(settings):
        _fail_dead_local_trials(study)
        if len(study.get_trials(deepcopy=False, states=counted)) >= settings.trials:
            return None
        trial = study.ask()
        trial.set_user_attr("worker", _worker())
        return trial


def _train_trial(trial, settings: TuneSettings, space: dict, hook: ReportHook) -> float:
    """Train one trial into ``<output>/trial_<n>``; returns the metric's last value."""
    out = os.path.join(settings.output, f"trial_{trial.number}")
    overrides = suggest(trial, space)
    trial.set_user_attr("overrides", overrides)
    trial.set_user_attr("output_dir", out)
    cfg = setup_config(settings.config_file, [*settings.opts, *overrides], output_dir=out)
    os.makedirs(out, exist_ok=True)
    write_text_atomic(os.path.join(out, "config.yaml"), cfg.dump())
    logger.info("trial %d: %s -> %s", trial.number, " ".join(map(str, overrides)), out)
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)  # as default_setup does for train_net.py
    trainer = Trainer(cfg)
    trainer.register_hooks([hook])
    trainer.resume_or_load(resume=False)
    trainer.train()
    latest = trainer.storage.latest()
    if settings.metric not in latest:
        raise KeyError(f"--metric {settings.metric!r} was never logged; logged: {sorted(latest)}")
    kept = ("cxr", "cls", "bbox", "val")  # evaluation results and validation losses
    metrics = {k: float(v) for k, (v, _) in latest.items() if k.split("/")[0] in kept}
    metrics[settings.metric] = float(latest[settings.metric][0])
    trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if math.isfinite(v)})
    return float(latest[settings.metric][0])


def _run_and_tell(study, trial, settings: TuneSettings, space: dict) -> None:
    optuna = _optuna()
    TrialState = _optuna("optuna.trial").TrialState

    hook = ReportHook(trial, settings.metric)
    try:
        value = _train_trial(trial, settings, space, hook)
    except Exception as e:  # noqa: BLE001  (a crashing trial is recorded; the search goes on)
        if isinstance(e, optuna.TrialPruned) or hook.pruned is not None:
            logger.info("trial %d %s", trial.number, hook.pruned or e)
            study.tell(trial, state=TrialState.PRUNED)
            return
        logger.exception("trial %d failed", trial.number)
        trial.set_user_attr("error", f"{type(e).__name__}: {e}")
        study.tell(trial, state=TrialState.FAIL)
        return
    if not math.isfinite(value):
        trial.set_user_attr("error", f"{settings.metric} is {value}")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, value)
    logger.info("trial %d: %s = %.6g", trial.number, settings.metric, value)


def open_study(settings: TuneSettings, max_iter: int):
    """Create the study, or load it when it exists (same name in the same storage)."""
    optuna = _optuna()

    storage = _storage(settings)
    study = optuna.create_study(storage=storage, study_name=settings.study, load_if_exists=True,
                                direction=settings.direction,
                                pruner=PRUNERS.get(settings.pruner)(max_iter))  # fmt: skip
    if study.direction.name.lower() != settings.direction:
        raise ValueError(f"study {settings.study!r} exists with direction "
                         f"{study.direction.name.lower()}, not {settings.direction}")  # fmt: skip
    return study


def write_trials_csv(study, path: str) -> None:
    """``trials.csv``: number, state, value, params (``KEY=VALUE;...``), output folder, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        params = ";".join(f"{k}={v}" for k, v in t.params.items())
        rows.append([t.number, t.state.name, "" if t.value is None else t.value, params,
                     t.user_attrs.get("output_dir", ""), t.user_attrs.get("error", "")])  # fmt: skip
    write_csv_atomic(path, ["number", "state", "value", "params", "output_dir", "error"], rows)


def _save_plot(plot: Callable, study, path: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..fileio import write_bytes_atomic

    try:
        ax = plot(study)
    except (ValueError, RuntimeError) as e:  # e.g. importances need 2+ complete trials
        logger.warning("%s not drawn: %s", os.path.basename(path), e)
        return
    fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def write_outputs(study, settings: TuneSettings) -> dict:
    """``best.yaml``, ``trials.csv`` and the plots into ``settings.output``; a summary dict."""
    vis = _optuna("optuna.visualization.matplotlib")
    TrialState = _optuna("optuna.trial").TrialState

    write_trials_csv(study, os.path.join(settings.output, "trials.csv"))
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    summary = {"trials": len(study.trials), "complete": len(done), "best": None}
    if done:
        best = study.best_trial
        cfg = setup_config(settings.config_file, [*settings.opts, *best.user_attrs["overrides"]],
                           output_dir=best.user_attrs["output_dir"])  # fmt: skip
        write_text_atomic(os.path.join(settings.output, "best.yaml"), cfg.dump())
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params}
    if settings.plots and done:
        for name, plot in (("history", vis.plot_optimization_history),
                           ("importance", vis.plot_param_importances),
                           ("intermediate", vis.plot_intermediate_values)):  # fmt: skip
            _save_plot(plot, study, os.path.join(settings.output, f"{name}.png"))
    return summary


def run_tune(settings: TuneSettings) -> dict:
    """Run trials until the study holds ``settings.trials``, then write the outputs.

    Raises:
        SpaceError, StorageError, ValueError: bad space file, storage, metric direction.
    """
    from ..engine.defaults import setup_logging

    os.makedirs(settings.output, exist_ok=True)
    setup_logging(settings.output)
    if settings.pruner not in PRUNERS.names():
        raise ValueError(f"--pruner {settings.pruner!r}: one of {PRUNERS.names()}")
    cfg = setup_config(settings.config_file, settings.opts)
    space = load_space(settings.space, cfg)
    study = open_study(settings, cfg.SOLVER.MAX_ITER)
    while (trial := _next_trial(study, settings)) is not None:
        _run_and_tell(study, trial, settings, space)
    summary = write_outputs(study, settings)
    logger.info("study %s: %s", settings.study, summary)
    return summary
