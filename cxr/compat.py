"""Make the PyPI detectron2 v0.6 source release run on today's torch and Pillow.

Supplies only what is missing, and nothing else:

* ``detectron2._C``: the release ships no compiled ops. When no compiled module is importable
  (upstream builds have one; ``pb1-detectron2`` does not), a stand-in module is installed whose
  ops raise :class:`NotImplementedError` naming the op and the reason. Only deformable
  convolution, rotated boxes / ROIAlignRotated and the C++ COCOeval need it; everything cxr uses
  has a pure-Python/torchvision path. A real compiled ``_C`` is used untouched.
* ``PIL.Image.LINEAR``: removed in Pillow 10, still referenced by detectron2's transforms;
  aliased to ``BILINEAR`` (the same filter under its old name).
* ``MapDataset`` retries: when a mapper returns None (a skipped bad image), detectron2 v0.6
  draws another index with ``random.sample`` from a ``set``, which Python >= 3.11 refuses
  (``TypeError: Population must be a sequence``). The candidate set is made indexable so the
  retry works as designed; nothing else about the dataset changes.
* ``hooks.LRScheduler`` state: detectron2 v0.6 saves and restores the scheduler's state only
  for subclasses of ``torch.optim.lr_scheduler._LRScheduler``; torch 2's schedulers (``StepLR``,
  ``MultiStepLR``, ...) derive from ``LRScheduler`` instead, so a resumed run restarted their
  schedule from the beginning. The hook's ``state_dict`` / ``load_state_dict`` are made to
  accept any ``LRScheduler``, as later detectron2 releases do; applied only when the installed
  hook still drops a torch 2 scheduler's state.

* fvcore's import-time ``torch.jit.script`` calls (``fvcore.nn``, imported by detectron2's
  layers) make torch 2.10+ print ``FutureWarning: `torch.jit.script` is deprecated`` once per
  scripted function, in every tool, even with ``--help``. That one warning, raised by
  ``torch.jit._script``, is filtered before fvcore is imported; so is the
  ``torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument``
  ``UserWarning`` that detectron2 v0.6's anchor generators trigger in every detector run
  (``torch.meshgrid(shifts_y, shifts_x)``, whose default ``ij`` indexing is what they mean).
  Every other warning is kept.

* ``np.int`` in ``detectron2.data.build``: NumPy 2 removed the alias, so
  ``print_instances_class_histogram`` raised AttributeError, which
  ``get_detection_dataset_dicts`` swallows: the table of instances per class that detectron2
  logs when it builds a training set silently disappeared. That module alone gets a view of
  NumPy in which ``int`` is the builtin ``int`` (what the alias always meant).

* Multi-process launch without CUDA: detectron2 v0.6's ``launch`` worker asserts CUDA and
  always initialises NCCL, so ``--num-machines`` / ``--num-gpus`` above one could not run on
  CPU hosts. Later detectron2 releases pick gloo when CUDA is absent; the worker is given that
  behaviour (on CUDA machines detectron2's own NCCL worker still runs, unchanged). Likewise
  ``create_ddp_model`` passes ``device_ids=[local rank]``, which torch's
  ``DistributedDataParallel`` refuses for a CPU model; a CPU model is wrapped without them.

Every fix is applied only when the installed detectron2 shows the problem, so a detectron2 that
already has the fix is left alone.
"""

from __future__ import annotations

import collections.abc
import importlib
import importlib.util
import logging
import sys
import types
from typing import Any, Callable

__all__ = ["INSTALL_DETECTRON2", "STANDIN_C", "install", "require_detectron2"]

#: True when the stand-in ``detectron2._C`` was installed by :func:`install`.
STANDIN_C = False

_REASON = (
    "is a compiled detectron2 op, and this detectron2 was installed without compiled ops "
    "(the PyPI source release pb1-detectron2==0.6 lacks the C++/CUDA sources). "
    "Use a config that avoids it (deformable convs, rotated boxes, "
    "COCOEvaluator(use_fast_impl=True)), or install upstream detectron2 from GitHub (see README)."
)


class _StandInC(types.ModuleType):
    """Module object for ``detectron2._C`` whose every op raises a clear error when called."""

    def __init__(self) -> None:
        super().__init__(
            "detectron2._C", "Stand-in for detectron2's compiled ops (installed by cxr)"
        )
        self.__file__ = __file__  # collect_env prints it

    @staticmethod
    def get_compiler_version() -> str:
        return "none (cxr stand-in: detectron2 installed without compiled ops)"

    @staticmethod
    def get_cuda_version() -> str:
        return "none (cxr stand-in)"

    @staticmethod
    def has_cuda() -> bool:
        return False

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)

        def _missing(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError(f"detectron2._C.{name} {_REASON}")

        _missing.__name__ = name
        return _missing


INSTALL_DETECTRON2 = (
    "cxr needs detectron2 v0.6, which is not installed and has no wheels on the package index: "
    "run `python tools/install_detectron2.py` from the cxr source tree (it installs the PyPI "
    "source release's Python package and detectron2's own dependencies; docs/install.md), or "
    "install upstream detectron2 from GitHub"
)


def require_detectron2() -> None:
    """Raise ImportError saying how to install detectron2 when it is not importable."""
    if importlib.util.find_spec("detectron2") is None:
        raise ImportError(INSTALL_DETECTRON2)


def _compiled_c_available() -> bool:
    if "detectron2._C" in sys.modules:
        return not isinstance(sys.modules["detectron2._C"], _StandInC)
    try:
        return importlib.util.find_spec("detectron2._C") is not None
    except (ImportError, ValueError):
        return False


def _install_standin_c() -> bool:
    if _compiled_c_available():
        return False
    import detectron2

    module = _StandInC()
    sys.modules["detectron2._C"] = module
    detectron2._C = module  # type: ignore[attr-defined]
    return True


def _patch_pillow() -> bool:
    from PIL import Image

    if hasattr(Image, "LINEAR"):
        return False
    Image.LINEAR = Image.BILINEAR  # type: ignore[attr-defined]
    return True


class _SampleableSet(set):
    """A set that ``random.sample`` accepts on Python >= 3.11 (it requires a Sequence)."""

    def __getitem__(self, i: int) -> int:
        return sorted(self)[i]


collections.abc.Sequence.register(_SampleableSet)


def _patch_map_dataset() -> bool:
    from detectron2.data.common import MapDataset

    if sys.version_info < (3, 11) or getattr(MapDataset, "_cxr_patched", False):
        return False
    original_init = MapDataset.__init__

    def __init__(self, dataset, map_func):
        original_init(self, dataset, map_func)
        if type(self._fallback_candidates) is set:
            self._fallback_candidates = _SampleableSet(self._fallback_candidates)

    MapDataset.__init__ = __init__
    MapDataset._cxr_patched = True
    return True


def _torch_scheduler_state_dropped() -> bool:
    """Whether detectron2's ``hooks.LRScheduler`` returns no state for a torch ``StepLR``."""
    import torch
    from detectron2.engine import hooks

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    return hooks.LRScheduler(opt, torch.optim.lr_scheduler.StepLR(opt, 1)).state_dict() == {}


def _patch_lr_scheduler_hook() -> bool:
    from detectron2.engine import hooks

    if getattr(hooks.LRScheduler, "_cxr_patched", False) or not _torch_scheduler_state_dropped():
        return False
    import torch

    # torch >= 2.0 names the base class LRScheduler; _LRScheduler is a deprecated subclass
    base = getattr(torch.optim.lr_scheduler, "LRScheduler", torch.optim.lr_scheduler._LRScheduler)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if isinstance(self.scheduler, base) else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if isinstance(self.scheduler, base):
            logging.getLogger(hooks.__name__).info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state_dict)

    hooks.LRScheduler.state_dict = state_dict
    hooks.LRScheduler.load_state_dict = load_state_dict
    hooks.LRScheduler._cxr_patched = True
    return True


class _NumpyWithIntAlias(types.ModuleType):
    """NumPy seen through a module that still has the ``int`` alias NumPy 2 removed."""

    int = int

    def __init__(self, numpy: types.ModuleType) -> None:
        super().__init__("numpy", numpy.__doc__)
        self._numpy = numpy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._numpy, name)


def _patch_numpy_int_alias() -> bool:
    import numpy as np
    from detectron2.data import build

    if hasattr(np, "int") or isinstance(build.np, _NumpyWithIntAlias):
        return False
    build.np = _NumpyWithIntAlias(np)
    return True


def _gloo_distributed_worker(
    local_rank, main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args,
    timeout=None,
):  # fmt: skip
    """detectron2's launch worker as later releases have it: gloo when CUDA is absent.

    (detectron2 v0.6 has no hook for the backend, so its short body is repeated for the gloo
    case; with CUDA detectron2's own worker runs.)
    """
    import torch
    import torch.distributed as dist

    launch_module = importlib.import_module("detectron2.engine.launch")
    from detectron2.utils import comm

    timeout = launch_module.DEFAULT_TIMEOUT if timeout is None else timeout
    if torch.cuda.is_available():
        return launch_module._cxr_nccl_worker(
            local_rank, main_func, world_size, num_gpus_per_machine, machine_rank, dist_url,
            args, timeout,
        )  # fmt: skip
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    try:
        dist.init_process_group(backend="GLOO", init_method=dist_url, world_size=world_size,
                                rank=global_rank, timeout=timeout)  # fmt: skip
    except Exception:
        logging.getLogger(launch_module.__name__).error("Process group URL: %s", dist_url)
        raise
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_gpus_per_machine):
        group = dist.new_group(
            list(range(i * num_gpus_per_machine, (i + 1) * num_gpus_per_machine))
        )
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    main_func(*args)


def _launch_insists_on_nccl() -> bool:
    """Whether detectron2's launch worker knows no backend but NCCL (v0.6)."""
    import inspect

    launch_module = importlib.import_module("detectron2.engine.launch")

    worker = getattr(launch_module, "_cxr_nccl_worker", launch_module._distributed_worker)
    return "GLOO" not in inspect.getsource(worker).upper()


def _patch_launch_gloo() -> bool:
    launch_module = importlib.import_module("detectron2.engine.launch")

    if launch_module._distributed_worker is _gloo_distributed_worker:
        return False
    if not _launch_insists_on_nccl():
        return False
    launch_module._cxr_nccl_worker = launch_module._distributed_worker
    launch_module._distributed_worker = _gloo_distributed_worker
    return True


def _ddp_gives_cpu_models_device_ids() -> bool:
    import inspect

    defaults = importlib.import_module("detectron2.engine.defaults")

    src = inspect.getsource(getattr(defaults, "_cxr_create_ddp_model", defaults.create_ddp_model))
    return 'kwargs["device_ids"] = [comm.get_local_rank()]' in src and "cuda" not in src.lower()


def _patch_create_ddp_model() -> bool:
    import detectron2.engine

    defaults = importlib.import_module("detectron2.engine.defaults")

    if hasattr(defaults, "_cxr_create_ddp_model") or not _ddp_gives_cpu_models_device_ids():
        return False
    original = defaults.create_ddp_model

    def create_ddp_model(model, *, fp16_compression=False, **kwargs):
        on_cpu = all(p.device.type == "cpu" for p in model.parameters())
        if on_cpu and "device_ids" not in kwargs:
            kwargs["device_ids"] = None  # torch's DDP takes no device ids for a CPU model
        return original(model, fp16_compression=fp16_compression, **kwargs)

    defaults._cxr_create_ddp_model = original
    defaults.create_ddp_model = create_ddp_model
    detectron2.engine.create_ddp_model = create_ddp_model
    return True


#: The known warnings :func:`_filter_known_warnings` silences: (category, message, module).
KNOWN_WARNINGS = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit\._script"),
    (UserWarning, r"torch\.meshgrid: in an upcoming release", r"torch\.functional"),
)


def _filter_known_warnings() -> None:
    import warnings

    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def install() -> None:
    """Apply every shim that is needed; idempotent."""
    global STANDIN_C
    require_detectron2()
    _filter_known_warnings()  # before anything imports fvcore
    STANDIN_C = _install_standin_c() or STANDIN_C
    _patch_pillow()
    _patch_map_dataset()
    _patch_lr_scheduler_hook()
    _patch_numpy_int_alias()
    _patch_launch_gloo()
    _patch_create_ddp_model()


install()
