"""Config keys of stochastic weight averaging (:mod:`cxr.engine.swa`); each with a comment."""

from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("swa")
def add_swa_config(cfg) -> None:
    """Add ``SOLVER.SWA`` to ``cfg`` in place."""
    cfg.SOLVER.SWA = CN()
    # Average the weights of the last part of training into <OUTPUT_DIR>/model_swa.pth (BN
    # statistics recomputed) and evaluate it after training; model_final.pth and EMA unchanged.
    cfg.SOLVER.SWA.ENABLED = False
    # First averaged iteration, as a fraction of SOLVER.MAX_ITER.
    cfg.SOLVER.SWA.START = 0.75
    # Iterations between two averaged snapshots.
    cfg.SOLVER.SWA.PERIOD = 50
    # Training batches used to recompute the BatchNorm running statistics (0: keep the averaged
    # running statistics).
    cfg.SOLVER.SWA.BN_BATCHES = 50
