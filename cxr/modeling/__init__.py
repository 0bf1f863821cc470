"""Modeling: backbones, meta-architectures and ROI heads registered into detectron2."""
