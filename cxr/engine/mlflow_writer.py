"""MLflow tracking of a training run: a detectron2 ``EventWriter`` plus an end-of-run step.

:class:`MLflowWriter` is added to the Trainer's writers (rank 0 only, as detectron2 runs its
writers) when ``CXR.MLFLOW.ENABLED``. It logs

- params: the flattened config (``MODEL.RETINANET.NUM_CLASSES`` -> ``"8"``), at the start;
- metrics: at every write (each logging period, and after each evaluation) every scalar of the
  event storage that is new since the last write, at its own iteration: the losses, the learning
  rate, and the evaluation results (``cxr/AP50``, ``cxr/voc_map40``, ``cxr/froc_cpm``,
  ``cxr/sensitivity_macro``, ..., ``cls/auroc_macro`` for classifiers). MLflow names allow
  letters, digits and ``_-./ :`` only, so other characters become ``_``
  (``cxr/froc_sens@0.125fp`` -> ``cxr/froc_sens_0.125fp``). Undefined (NaN) values are skipped;
- artifacts, at the end: ``config.yaml``, the last evaluation's ``metrics.json``,
  ``thresholds.json`` and ``report.html`` (under ``eval/<dataset>/``), the operating points of
  the best checkpoint (``thresholds.json``), and with ``CXR.MLFLOW.LOG_MODEL`` the final
  checkpoints;
- tags: ``cxr.version``, and ``mlflow.source.git.commit`` when the code is a git checkout.

The run ends FINISHED when training reached ``SOLVER.MAX_ITER``, else FAILED.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import re
import subprocess

from cxr_runtime.optional import import_optional
from detectron2.utils.events import EventWriter, get_event_storage

__all__ = ["MLflowWriter", "build_mlflow_writer", "flatten_config", "local_tracking_uri"]

logger = logging.getLogger(__name__)

_BAD_NAME_CHARS = re.compile(r"[^\w\-./ :]")
#: files of an evaluation folder logged as artifacts
EVAL_ARTIFACTS = ("metrics.json", "thresholds.json", "report.html")
MODEL_ARTIFACTS = ("model_final.pth", "model_best.pth", "model_swa.pth")


def _mlflow(module: str = "mlflow"):
    """``module`` of the optional mlflow package; a missing package names its extra."""
    return import_optional(module, "CXR.MLFLOW.ENABLED")


def _mlflow_client(uri: str):
    return _mlflow("mlflow.tracking").MlflowClient(tracking_uri=uri)


def metric_name(key: str) -> str:
    """An event-storage key as an MLflow metric name (disallowed characters -> ``_``)."""
    return _BAD_NAME_CHARS.sub("_", key)


def flatten_config(cfg, prefix: str = "") -> dict[str, str]:
    """``{"MODEL.RETINANET.NUM_CLASSES": "8", ...}``: every leaf of a (CfgNode) mapping."""
    out: dict[str, str] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = str(v)
    return out


def local_tracking_uri(output_dir: str) -> str:
    """The embedded default store of a run: ``sqlite:///<output_dir>/mlflow/mlflow.db``."""
    folder = os.path.abspath(os.path.join(output_dir, "mlflow"))
    os.makedirs(folder, exist_ok=True)
    return "sqlite:///" + os.path.join(folder, "mlflow.db")


def _git_commit() -> str:
    src = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _tags() -> dict[str, str]:
    try:
        tags = {"cxr.version": importlib.metadata.version("cxr")}
    except importlib.metadata.PackageNotFoundError:
        tags = {}
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


class MLflowWriter(EventWriter):
    """Logs a run to MLflow; see the module docstring for what is logged."""

    def __init__(self, cfg, trainer=None):
        """
        Args:
            cfg: the run's config (``CXR.MLFLOW.*``, ``OUTPUT_DIR``, ``DATASETS.TEST``,
                ``SOLVER.MAX_ITER``); logged as params.
            trainer: the Trainer (its ``iter`` decides FINISHED / FAILED at the end).
        """
        m = cfg.CXR.MLFLOW
        self._cfg, self._trainer = cfg, trainer
        uri = m.TRACKING_URI or local_tracking_uri(cfg.OUTPUT_DIR)
        self.client = _mlflow_client(uri)
        Param = _mlflow("mlflow.entities").Param

        exp = self.client.get_experiment_by_name(m.EXPERIMENT)
        if exp is None:
            art = None
            if not m.TRACKING_URI:  # local store: artifacts beside it, not in the working dir
                art = "file://" + os.path.abspath(
                    os.path.join(cfg.OUTPUT_DIR, "mlflow", "artifacts")
                )
            exp_id = self.client.create_experiment(m.EXPERIMENT, artifact_location=art)
        else:
            exp_id = exp.experiment_id
        name = m.RUN_NAME or os.path.basename(os.path.normpath(cfg.OUTPUT_DIR))
        run = self.client.create_run(exp_id, run_name=name, tags=_tags())
        self.run_id = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in flatten_config(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow's batch limit for params
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self._last_iter: dict[str, int] = {}
        logger.info("MLflow run %s (experiment %r) at %s", self.run_id, m.EXPERIMENT, uri)

    def write(self) -> None:
        """Log every scalar put into the event storage since the last write, at its iteration."""
        import time

        Metric = _mlflow("mlflow.entities").Metric

        storage = get_event_storage()
        now = int(time.time() * 1000)
        metrics = []
        for key, (value, it) in storage.latest().items():
            if it <= self._last_iter.get(key, -1):
                continue
            self._last_iter[key] = it
            value = float(value)
            if math.isfinite(value):
                metrics.append(Metric(metric_name(key), value, now, int(it)))
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit for metrics
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def _artifacts(self) -> list[tuple[str, str | None]]:
        """(file, artifact folder) of the end-of-run files that exist."""
        out_dir = self._cfg.OUTPUT_DIR
        files: list[tuple[str, str | None]] = [(os.path.join(out_dir, "config.yaml"), None)]
        files.append((os.path.join(out_dir, "thresholds.json"), None))
        for ds in self._cfg.DATASETS.TEST:
            folder = os.path.join(out_dir, "inference", ds)
            files += [(os.path.join(folder, f), f"eval/{ds}") for f in EVAL_ARTIFACTS]
        if self._cfg.CXR.MLFLOW.LOG_MODEL:
            files += [(os.path.join(out_dir, f), "model") for f in MODEL_ARTIFACTS]
        return [(f, d) for f, d in files if os.path.isfile(f)]

    def close(self) -> None:
        """End of the run: the artifacts, then the run's final status."""
        for path, folder in self._artifacts():
            self.client.log_artifact(self.run_id, path, folder)
        # detectron2's train loop leaves iter == max_iter only when every iteration ran
        done = self._trainer is None or self._trainer.iter >= self._trainer.max_iter
        self.client.set_terminated(self.run_id, "FINISHED" if done else "FAILED")
        logger.info("MLflow run %s ended (%s)", self.run_id, "FINISHED" if done else "FAILED")


def build_mlflow_writer(cfg, trainer=None) -> MLflowWriter | None:
    """An :class:`MLflowWriter` when ``CXR.MLFLOW.ENABLED``, else None."""
    return MLflowWriter(cfg, trainer) if cfg.CXR.MLFLOW.ENABLED else None
