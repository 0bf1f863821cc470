"""Config keys read by :mod:`cxr.modeling`; each with a comment."""
from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("modeling")
def add_modeling_config(cfg) -> None:
    """Add the :mod:`cxr.modeling` keys to ``cfg`` in place, one node at a time."""
    _add_timm(cfg)
    _add_efficientnet(cfg)
    _add_bifpn(cfg)
    _add_anchor_generator(cfg)
    _add_retinanet(cfg)
    _add_roi_box_head(cfg)


def _add_timm(cfg) -> None:
    """Any timm trunk (build_timm_fpn_backbone, build_timm_bifpn_backbone)."""
    cfg.MODEL.TIMM = CN()
    # timm model name, e.g. "densenet121", "resnet50", "convnext_tiny", "efficientnetv2_rw_t".
    # Under build_timm_bifpn_backbone, empty: MODEL.EFFICIENTNET.NAME or the BiFPN preset's trunk.
    # Input channels follow MODEL.PIXEL_MEAN (1 value with INPUT.FORMAT "L").
    cfg.MODEL.TIMM.NAME = ""
    # timm feature indices of the stride 8, 16, 32 maps; empty: the trunk's last three.
    cfg.MODEL.TIMM.OUT_INDICES = []
    # True: timm fetches the trunk's default pretrained weights (its hub cache is honored). With
    # no network and no cached copy this fails at once, naming the weights and MODEL.TIMM.WEIGHTS.
    cfg.MODEL.TIMM.PRETRAINED = False
    # Local trunk weights: a state dict of the timm classification model (or of the trunk; or a
    # checkpoint with a "model"/"state_dict" entry), read without pickle code
    # (torch.load weights_only=True) and adapted by timm (1-channel input, classifier dropped).
    # Wins over PRETRAINED. MODEL.WEIGHTS (whole detector) is applied after it.
    cfg.MODEL.TIMM.WEIGHTS = ""
    # Stochastic depth (drop-path) rate inside the trunk, for trunks that have it.
    cfg.MODEL.TIMM.DROP_PATH_RATE = 0.0
    # Trunk stages frozen (0: train all; 1: the stem; n: the stem + first n-1 feature stages).
    cfg.MODEL.TIMM.FREEZE_AT = 0


def _add_efficientnet(cfg) -> None:
    """EfficientNet trunk of the EfficientDet backbone (MODEL.TIMM keys win when set)."""
    cfg.MODEL.EFFICIENTNET = CN()
    # timm model name of the trunk, e.g. "efficientnet_b0", "efficientnet_lite0".
    # Empty: the trunk of MODEL.BIFPN.PRESET (D0 -> efficientnet_b0, Lite0 -> efficientnet_lite0).
    cfg.MODEL.EFFICIENTNET.NAME = ""
    # Local weights file for the trunk alone (as MODEL.TIMM.WEIGHTS). Empty: random init.
    cfg.MODEL.EFFICIENTNET.WEIGHTS = ""
    # Stochastic depth (drop-path) rate inside the trunk's blocks during training.
    cfg.MODEL.EFFICIENTNET.DROP_PATH_RATE = 0.0
    # Number of trunk stages frozen (0: train all; n: stem + first n-1 block stages frozen).
    cfg.MODEL.EFFICIENTNET.FREEZE_AT = 0


def _add_bifpn(cfg) -> None:
    """BiFPN (ours): trunk strides 8/16/32 -> p3..p7."""
    cfg.MODEL.BIFPN = CN()
    # EfficientDet scaling preset: D0, D1, D2, D3, Lite0, Lite1, Lite2, Lite3 (case-insensitive),
    # and their TF_ twins (TF_D0, TF_Lite0, ...: tf_efficientnet trunk, PADDING "same"; the
    # layout of effdet's tf_efficientdet weights). Sets trunk, channels, layers, activation,
    # fusion and padding unless overridden below.
    cfg.MODEL.BIFPN.PRESET = "D0"
    # BiFPN width (channels of every p3..p7 map). 0: from the preset (D0 64, D1 88, D2 112, D3 160).
    cfg.MODEL.BIFPN.OUT_CHANNELS = 0
    # Number of stacked BiFPN layers. 0: from the preset (D0 3, D1 4, D2 5, D3 6).
    cfg.MODEL.BIFPN.NUM_LAYERS = 0
    # Normalization after every separable conv / lateral conv: "BN", "SyncBN", "GN" (detectron2
    # get_norm names). BN directly follows a bias-free conv, so it folds into it at eval time.
    cfg.MODEL.BIFPN.NORM = "BN"
    # Node fusion: "fast_normalized" (EfficientDet: relu(w_i) / (sum relu(w) + eps) weights) or
    # "sum" (plain sum; Lite presets). Empty: from the preset.
    cfg.MODEL.BIFPN.FUSION = ""
    # Batches are zero-padded to a multiple of this. 128 (the p7 stride) makes every level an
    # exact 2x of the next; any value works (all resampling is ceil(H / 2)), and a smaller one
    # saves the padding compute where the input size is not a multiple of 128 (Lite0: 320).
    cfg.MODEL.BIFPN.SIZE_DIVISIBILITY = 128
    # Run the trunk, BiFPN and (through its inputs) the head in channels-last (NHWC) memory
    # format: same results, several times faster depthwise convolutions on CPU (oneDNN).
    cfg.MODEL.BIFPN.CHANNELS_LAST = True
    # Activation in BiFPN and EfficientDet head: "silu" (swish) or "relu6". Empty: from preset.
    cfg.MODEL.BIFPN.ACTIVATION = ""
    # Max-pool downsampling padding: "" (symmetric) or "same" (TensorFlow: an even side is padded
    # at the bottom/right only). Empty: from the preset ("same" for TF_ presets).
    cfg.MODEL.BIFPN.PADDING = ""
    # EfficientDet's graph: the first BiFPN layer's bottom-up nodes at p4/p5 take their own 1x1
    # lateral of c4/c5 (needed to load effdet weights). False: share the top-down laterals.
    cfg.MODEL.BIFPN.SEPARATE_LATERALS = True


def _add_anchor_generator(cfg) -> None:
    """EfficientDetAnchorGenerator (MODEL.ANCHOR_GENERATOR.NAME)."""
    # effdet's anchors: per level with stride s, for octave o < NUM_SCALES and each (w, h) pair
    # of WH_RATIOS, a box of width ANCHOR_SCALE * s * 2^(o / NUM_SCALES) * w (height likewise)
    # centred on the cell centre (MODEL.ANCHOR_GENERATOR.OFFSET 0.5). Anchor index: o * pairs + j.
    cfg.MODEL.ANCHOR_GENERATOR.ANCHOR_SCALE = 4.0
    # Anchor octave scales per level.
    cfg.MODEL.ANCHOR_GENERATOR.NUM_SCALES = 3
    # (width, height) multipliers; EfficientDet's (1.4, 0.7) is its aspect ratio 2.
    cfg.MODEL.ANCHOR_GENERATOR.WH_RATIOS = [[1.0, 1.0], [1.4, 0.7], [0.7, 1.4]]


def _add_retinanet(cfg) -> None:
    """CXRRetinaNet additions (detectron2's MODEL.RETINANET keys stay as they are)."""
    # Head built by name from cxr.modeling.RETINANET_HEAD_REGISTRY: "RetinaNetHead" (detectron2's,
    # full 3x3 convs, NUM_CONVS deep) or "EfficientDetHead" (separable convs, BN per level,
    # NUM_CONVS deep, shared weights across levels).
    cfg.MODEL.RETINANET.HEAD_NAME = "RetinaNetHead"
    # Per-class focal alpha. None: the scalar MODEL.RETINANET.FOCAL_LOSS_ALPHA (detectron2).
    # A number: same alpha for every class. A list of NUM_CLASSES numbers: alpha per class.
    # "auto": from the box counts per class of DATASETS.TRAIN, see
    # cxr.modeling.class_balanced_alpha (mean alpha = FOCAL_LOSS_ALPHA, inverse-frequency weights).
    cfg.MODEL.RETINANET.FOCAL_ALPHA = None
    # Exponent p of the "auto" weights w_c = n_c^-p (1: inverse frequency, 0.5: inverse sqrt).
    cfg.MODEL.RETINANET.FOCAL_ALPHA_AUTO_POWER = 1.0
    # Keep the whole detector (backbone, head) and its input batch in channels-last (NHWC)
    # memory format: same results; on CPU most convolutions then take oneDNN's kernels (about
    # 1.3x faster training steps for the ResNet demo model). The EfficientNet + BiFPN backbone
    # has its own MODEL.BIFPN.CHANNELS_LAST.
    cfg.MODEL.RETINANET.CHANNELS_LAST = False


def _add_roi_box_head(cfg) -> None:
    """FocalROIHeads: sigmoid focal loss in the Fast R-CNN box predictor."""
    # Focal gamma of the box classifier (0 = per-class sigmoid cross-entropy).
    cfg.MODEL.ROI_BOX_HEAD.FOCAL_GAMMA = 2.0
    # Scalar focal alpha of the box classifier (weight of positive targets; negatives weigh
    # 1 - alpha); negative: no alpha weighting. Also the mean alpha of FOCAL_ALPHA "auto".
    cfg.MODEL.ROI_BOX_HEAD.FOCAL_LOSS_ALPHA = 0.25
    # Per-class alpha, as MODEL.RETINANET.FOCAL_ALPHA: None (use FOCAL_LOSS_ALPHA), a number, a
    # list of NUM_CLASSES numbers, or "auto" (from the box counts per class of DATASETS.TRAIN).
    cfg.MODEL.ROI_BOX_HEAD.FOCAL_ALPHA = None
    # Exponent p of the "auto" weights w_c = n_c^-p.
    cfg.MODEL.ROI_BOX_HEAD.FOCAL_ALPHA_AUTO_POWER = 1.0
    # Prior probability that sets the classifier bias at init: b = -log((1 - p) / p).
    cfg.MODEL.ROI_BOX_HEAD.FOCAL_PRIOR_PROB = 0.01
