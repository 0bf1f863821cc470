"""Imports every module that registers a measurement task (one line each).

The ``all`` task (:mod:`benchmarks.suite`) runs these, each in its own process; it imports this
module, never the other way round.
"""
from . import data  # noqa: F401  (task: data)
from . import deploy  # noqa: F401  (tasks: *_onnxruntime_*, predict_dicom_end_to_end_d0)
from . import evaluation  # noqa: F401  (task: eval)
from . import inference  # noqa: F401  (task: inference)
from . import peers  # noqa: F401  (tasks: *_vs_effdet_*)
from . import prepare  # noqa: F401  (tasks: data_dicom_prepared, prepare_films_per_s)
from . import streaming  # noqa: F401  (tasks: data_cls_shards_vs_png, nih_cls_all_load)
from . import serve  # noqa: F401  (tasks: serve_latency_*, serve_cold_start)
from . import train  # noqa: F401  (task: train)
