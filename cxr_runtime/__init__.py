"""cxr_runtime: the deployable, torch-free runtime of exported cxr models.

It needs numpy, Pillow, OpenCV (``opencv-python-headless``), pydicom, tqdm and onnxruntime (or
openvino for ``engine="openvino"``), and
never imports torch, detectron2 or :mod:`cxr` (``import cxr`` registers everything into
detectron2, which a prediction process does not need):

- :mod:`cxr_runtime.detector`: :class:`~cxr_runtime.detector.OnnxDetector`, an exported
  ``model.onnx`` run by ONNX Runtime (or OpenVINO) with its numpy post-processing;
- :mod:`cxr_runtime.io`: PNG / JPEG / DICOM readers;
- :mod:`cxr_runtime.operating_points`: the decision rule and ``thresholds.json``;
- :mod:`cxr_runtime.predict`: the prediction loop and its output files (``tools/predict.py``);
- :mod:`cxr_runtime.fileio`, :mod:`cxr_runtime.paths`: atomic writes, output-folder checks;
- :mod:`cxr_runtime.optional`: optional packages, imported with the ``pip install`` extra to run
  when missing (cxr uses it too).

cxr re-exports these under its own names (``cxr.export.runtime``, ``cxr.data.io``, ...).
Submodules are imported on demand, so ``import cxr_runtime`` costs nothing.
"""

__version__ = "0.1.0"
