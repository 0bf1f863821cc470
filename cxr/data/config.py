"""Config keys read by :mod:`cxr.data`; each with a comment."""

from detectron2.config import CfgNode as CN

from ..config import CONFIG_REGISTRY


@CONFIG_REGISTRY.register_as("data")
def add_data_config(cfg) -> None:
    """Add the :mod:`cxr.data` keys to ``cfg`` in place."""
    # Per-image dataset mapper, chosen by name from cxr.data.MAPPER_REGISTRY. AlbumentationsMapper
    # reads PNG/JPEG/DICOM with cxr.data.io.read_xray; "DatasetMapper" is detectron2's own.
    cfg.INPUT.MAPPER = "AlbumentationsMapper"
    # The image reaches the model as INPUT.FORMAT: "BGR"/"RGB" replicate the gray film to three
    # identical channels; "L" keeps one channel (then use a 1-value MODEL.PIXEL_MEAN/STD).
    cfg.INPUT.ALBUMENTATIONS = CN()
    # Train-time pipeline after the resize/flip: "none", "light", "strong" (see
    # cxr/data/augmentations.py) or a path to an albumentations.save() .json/.yaml file.
    cfg.INPUT.ALBUMENTATIONS.PRESET = "none"
    # A box keeping less than this fraction of its area after augmentation is dropped; an image
    # left without boxes stays in training as a negative.
    cfg.INPUT.ALBUMENTATIONS.MIN_VISIBILITY = 0.3
    # When True the training mapper returns None for a file that fails to decode (logged and
    # counted) and detectron2's loader retries another index; when False it raises
    # cxr.data.io.ImageReadError. Test-time mapping always raises (an evaluation must not skip).
    # (detectron2 v0.6's retry needs cxr.compat's MapDataset patch on Python >= 3.11.)
    cfg.DATALOADER.SKIP_BAD_IMAGES = False
    # Streaming from shard sets (<name>@<size>-wds, cxr.data.wds.ShardStream).
    cfg.DATALOADER.WDS = CN()
    # Samples held by each reader's shuffle buffer (one reader per rank and loader worker);
    # larger mixes shards better and costs memory (buffer x encoded film size); 0 = no shuffle.
    cfg.DATALOADER.WDS.SHUFFLE_BUFFER = 1000
