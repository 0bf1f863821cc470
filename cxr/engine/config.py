"""Config keys read by :mod:`cxr.engine`; each with a comment."""
from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("engine")
def add_engine_config(cfg) -> None:
    """Add the :mod:`cxr.engine` keys to ``cfg`` in place."""
    # Exponential moving average of the weights, used for evaluation and saved with checkpoints.
    cfg.MODEL.EMA = CN()
    cfg.MODEL.EMA.ENABLED = False
    # Target decay; the effective decay ramps up as min(DECAY, (1 + n) / (10 + n)) at update n,
    # so short CPU runs are not dominated by the random initialisation.
    cfg.MODEL.EMA.DECAY = 0.999
    # Largest share of the MODEL.WEIGHTS tensors named like model tensors that loading may skip
    # for another shape (a class layer for another class count is a few); above it loading
    # stops: the weights are for another architecture or size. 1.0 never stops.
    cfg.MODEL.WEIGHTS_MAX_SKIPPED = 0.25
    # Fraction of each training batch drawn from images without boxes (used by
    # DATALOADER.SAMPLER_TRAIN "NegativeRatioSampler"; negative = no annotations).
    cfg.DATALOADER.NEGATIVE_FRACTION = 0.25
    # Metric that picks model_best.pth (a key of the event storage, e.g. "cxr/AP50",
    # "cxr/froc_cpm", "bbox/AP50"); empty disables best-checkpoint keeping.
    cfg.TEST.BEST_METRIC = "cxr/AP50"
    # "max" or "min" for TEST.BEST_METRIC.
    cfg.TEST.BEST_MODE = "max"
    # Every N iterations, the mean training losses on DATASETS.TEST[0] (no grad, BN frozen)
    # are logged as val/<loss>; 0 disables.
    cfg.TEST.VAL_LOSS_PERIOD = 0
    # At most this many images of DATASETS.TEST[0] enter each validation-loss pass.
    cfg.TEST.VAL_LOSS_MAX_IMAGES = 64
    # TensorBoard images every N iterations: ground truth (green) vs predictions (red) of a
    # detector, the Grad-CAM of a classifier's top finding (unless GRADCAM_IMAGES); 0 disables.
    cfg.CXR.VIS = CN()
    cfg.CXR.VIS.PERIOD = 0
    # How many images of DATASETS.TEST[0] are drawn each time.
    cfg.CXR.VIS.NUM_IMAGES = 2
    # Predictions below this score are not drawn.
    cfg.CXR.VIS.SCORE_THRESH = 0.3
    # Grad-CAM overlays of the first N images of the evaluated data set at every evaluation:
    # training puts them into TensorBoard (cxr/gradcam/<i>), tools/eval.py writes them as PNGs
    # into <output>/gradcam/. A classifier explains its top finding, a RetinaNet-family detector
    # its top boxes at their operating points (its top box when none reaches one); 0 disables.
    cfg.CXR.VIS.GRADCAM_IMAGES = 0
    # Detector boxes explained per Grad-CAM image (highest scores first; maps combined by max).
    cfg.CXR.VIS.GRADCAM_MAX_BOXES = 3
    # Map rule of every Grad-CAM picture (evaluation, training, tools/predict.py --gradcam):
    # "gradcam" (channel weights = mean gradient) or "hirescam" (gradient x feature, element-wise;
    # a detector box's map stays near the box). Same map for a classifier with POOL "avg".
    cfg.CXR.VIS.GRADCAM_METHOD = "gradcam"
