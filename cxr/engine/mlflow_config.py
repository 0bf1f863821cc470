"""Config keys of MLflow tracking (:mod:`cxr.engine.mlflow_writer`); each with a comment."""

from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("mlflow")
def add_mlflow_config(cfg) -> None:
    """Add ``CXR.MLFLOW`` to ``cfg`` in place."""
    cfg.CXR.MLFLOW = CN()
    # Log the run to MLflow (rank 0): the flattened config as params, every logged scalar and
    # every evaluation as metrics, config.yaml / metrics.json / thresholds.json / report.html as
    # artifacts. Needs the mlflow package.
    cfg.CXR.MLFLOW.ENABLED = False
    # Tracking URI: a server URL (http://host:5000), or a database URI (sqlite:///path.db);
    # "" = a local store under the run, sqlite:///<OUTPUT_DIR>/mlflow/mlflow.db, with its
    # artifacts in <OUTPUT_DIR>/mlflow/artifacts.
    cfg.CXR.MLFLOW.TRACKING_URI = ""
    # Experiment name (created when missing).
    cfg.CXR.MLFLOW.EXPERIMENT = "cxr"
    # Run name; "" = the last folder of OUTPUT_DIR.
    cfg.CXR.MLFLOW.RUN_NAME = ""
    # Also log the final checkpoints (model_final.pth, model_best.pth, model_swa.pth) as artifacts.
    cfg.CXR.MLFLOW.LOG_MODEL = False
