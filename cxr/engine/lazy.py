"""LazyConfig (``.py``) configs: detectron2's ``LazyConfig`` files, trained by the same Trainer.

A cxr LazyConfig file uses detectron2's top-level keys (``model``, ``dataloader.train`` /
``dataloader.test``, ``optimizer``, ``lr_multiplier``, ``train``); its ``LazyCall`` targets are
the functions below, whose keyword arguments are the lower-case names of the ``CfgNode`` keys
they stand for (``model.retinanet.num_classes`` is ``MODEL.RETINANET.NUM_CLASSES``). So
``instantiate(cfg.model)`` builds the model on its own, and :func:`lazy_to_cfg` turns the
whole file into the ``CfgNode`` that :class:`cxr.engine.Trainer` trains with: one training path
(EMA, SWA, best checkpoint, evaluators, validation loss, exact resume) for both config kinds.

Where each lazy key goes (:data:`LEAVES`, then the longest prefix of :data:`SECTIONS`)::

    model.*                          MODEL.*
    dataloader.train.dataset.names   DATASETS.TRAIN  (filter_empty: DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    dataloader.train.mapper.input.*  INPUT.*         (dataloader.test.mapper reuses it)
    dataloader.train.sampler.*       DATALOADER.*    (total_batch_size: SOLVER.IMS_PER_BATCH;
                                     num_workers, aspect_ratio_grouping: DATALOADER.*)
    dataloader.test.dataset.names    DATASETS.TEST
    optimizer.lr / lr_multiplier.*   SOLVER.BASE_LR / SOLVER.*
    train.max_iter, output_dir, init_checkpoint, eval_period, checkpointer.period, device, seed
                                     SOLVER.MAX_ITER, OUTPUT_DIR, MODEL.WEIGHTS, TEST.EVAL_PERIOD,
                                     SOLVER.CHECKPOINT_PERIOD, MODEL.DEVICE, SEED
    train.test.* / train.swa.* / train.cxr.* / train.mlflow.*
                                     TEST.* / SOLVER.SWA.* / CXR.* / CXR.MLFLOW.*

A key with no counterpart is an error naming it. ``key=value`` overrides are Hydra's override
grammar (detectron2's ``LazyConfig.apply_overrides``); they may not touch ``_target_`` (the
code that ``instantiate`` calls): that belongs in a reviewed config file.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import torch
from detectron2.config import LazyConfig
from detectron2.data import build_detection_test_loader
from omegaconf import DictConfig, OmegaConf

from ..config import CfgNode, get_cfg, load_yaml_safely

__all__ = [
    "LazyConfigError",
    "cxr_lr_multiplier",
    "cxr_mapper",
    "cxr_model",
    "cxr_optimizer",
    "cxr_test_loader",
    "cxr_train_loader",
    "is_lazy_config",
    "lazy_to_cfg",
    "load_lazy_config",
    "split_overrides",
]

logger = logging.getLogger(__name__)

#: lazy key -> CfgNode key, for keys whose names differ
LEAVES = {
    "dataloader.train.dataset.names": "DATASETS.TRAIN",
    "dataloader.train.dataset.filter_empty": "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
    "dataloader.train.total_batch_size": "SOLVER.IMS_PER_BATCH",
    "dataloader.train.num_workers": "DATALOADER.NUM_WORKERS",
    "dataloader.train.aspect_ratio_grouping": "DATALOADER.ASPECT_RATIO_GROUPING",
    "dataloader.train.mapper.skip_bad_images": "DATALOADER.SKIP_BAD_IMAGES",
    "dataloader.test.dataset.names": "DATASETS.TEST",
    "optimizer.lr": "SOLVER.BASE_LR",
    "lr_multiplier.name": "SOLVER.LR_SCHEDULER_NAME",
    "train.max_iter": "SOLVER.MAX_ITER",
    "train.output_dir": "OUTPUT_DIR",
    "train.init_checkpoint": "MODEL.WEIGHTS",
    "train.eval_period": "TEST.EVAL_PERIOD",
    "train.checkpointer.period": "SOLVER.CHECKPOINT_PERIOD",
    "train.device": "MODEL.DEVICE",
    "train.seed": "SEED",
    "train.cudnn_benchmark": "CUDNN_BENCHMARK",
}
#: lazy prefix -> CfgNode node; the rest of the key, upper-cased, names the key inside it
SECTIONS = {
    "model": "MODEL",
    "dataloader.train.mapper.input": "INPUT",
    "dataloader.train.sampler": "DATALOADER",
    "optimizer": "SOLVER",
    "lr_multiplier": "SOLVER",
    "train.test": "TEST",
    "train.swa": "SOLVER.SWA",
    "train.cxr": "CXR",
    "train.mlflow": "CXR.MLFLOW",
}
#: lazy keys that are wiring, not settings (checked or filled in at run time)
IGNORED = {
    "dataloader.train.mapper.is_train",
    "dataloader.test.mapper.is_train",
    "dataloader.test.mapper.input",
    "dataloader.test.mapper.skip_bad_images",
    "dataloader.test.dataset.filter_empty",
    "dataloader.test.num_workers",
    "optimizer.model",
    "dataloader.train.seed",
    "lr_multiplier.max_iter",
}


_MISSING = object()


class LazyConfigError(ValueError):
    """A LazyConfig file or override that cxr cannot use; the message names the file and key."""


def is_lazy_config(path: str) -> bool:
    """True for a ``.py`` config, and for a YAML file saved from one (lower-case ``model`` and
    ``train`` top-level keys, as ``LazyConfig.save`` writes them)."""
    if path.endswith(".py"):
        return True
    if not path.endswith((".yaml", ".yml")) or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        head = [ln.split(":", 1)[0] for ln in f if ln[:1].isalpha()]
    return "model" in head and "train" in head


def split_overrides(opts: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split command-line overrides into ``key=value`` (lazy) and ``KEY VALUE`` (CfgNode) ones.

    Returns:
        (lazy overrides, CfgNode ``KEY VALUE`` list).
    """
    lazy, pairs = [], []
    for o in opts:
        # "=" outside a KEY VALUE pair: a lazy override (a VALUE may itself hold "=")
        (lazy if "=" in o and len(pairs) % 2 == 0 else pairs).append(o)
    return lazy, pairs


def _check_override(path: str, override: str) -> None:
    key = override.split("=", 1)[0].lstrip("+~")
    if "=" not in override or not key:
        raise LazyConfigError(f"{path}: override {override!r} is not key=value")
    if "_target_" in key.split("."):
        raise LazyConfigError(
            f"{path}: override {override!r} refused: _target_ names the code that instantiate() "
            "calls; change it in a reviewed config file, not on the command line"
        )


def _load_lazy_yaml(path: str) -> DictConfig:
    """A saved LazyConfig YAML, read with ``yaml.safe_load`` (detectron2 v0.6 uses
    ``yaml.unsafe_load``, which runs the code that Python tags name)."""
    data = load_yaml_safely(path, path, LazyConfigError)
    if not isinstance(data, dict):
        raise LazyConfigError(f"{path}: top level must be a mapping")
    return OmegaConf.create(data, flags={"allow_objects": True})


def load_lazy_config(path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a LazyConfig ``.py`` file (or a YAML saved from one) and apply ``key=value``
    overrides (Hydra grammar, detectron2's ``LazyConfig.apply_overrides``).

    Raises:
        FileNotFoundError: no such file.
        LazyConfigError: wrong file type, unsafe YAML, a malformed override, an override of
            ``_target_`` or of a key that does not exist.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    if not path.endswith((".py", ".yaml", ".yml")):
        raise LazyConfigError(f"{path}: a LazyConfig is a .py file (or a .yaml saved from one)")
    for o in overrides:
        _check_override(path, o)
    cfg = LazyConfig.load(path) if path.endswith(".py") else _load_lazy_yaml(path)
    for o in overrides:
        key = o.split("=", 1)[0]
        if not o.startswith("+") and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise LazyConfigError(f"{path}: override {o!r}: no key {key!r} in the config")
    try:
        return LazyConfig.apply_overrides(cfg, list(overrides))
    except Exception as e:  # hydra's parser errors, KeyError of a non-config prefix
        raise LazyConfigError(f"{path}: overrides {list(overrides)}: {e}") from None


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def cfg_key_of(lazy_key: str) -> str | None:
    """The ``CfgNode`` key that the dotted lazy key sets, or None when it has none."""
    if lazy_key in LEAVES:
        return LEAVES[lazy_key]
    for prefix in sorted(SECTIONS, key=len, reverse=True):
        if lazy_key.startswith(prefix + "."):
            return SECTIONS[prefix] + "." + lazy_key[len(prefix) + 1 :].upper()
    return None


def _coerce(old: Any, value: Any, where: str) -> Any:
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(old, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(old, list) and isinstance(value, tuple):
        return list(value)
    if old is not None and value is not None and not isinstance(value, type(old)):
        raise LazyConfigError(f"{where}: expected {type(old).__name__}, got {value!r}")
    return value


def _set_cfg(cfg: CfgNode, cfg_key: str, value: Any, where: str) -> None:
    node = cfg
    *parents, last = cfg_key.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            raise LazyConfigError(f"{where}: {cfg_key} is not a config key")
        node = node[p]
    if last not in node:
        raise LazyConfigError(f"{where}: {cfg_key} is not a config key")
    node[last] = _coerce(node[last], value, where)


def _check_test_input(flat: dict, where: str) -> None:
    test_input = {k: v for k, v in flat.items() if k.startswith("dataloader.test.mapper.input.")}
    for k, v in test_input.items():
        train_v = flat.get(k.replace("dataloader.test.", "dataloader.train.", 1), _MISSING)
        if train_v != v:
            raise LazyConfigError(
                f"{where}: {k} = {v!r} differs from dataloader.train.mapper.input (cxr has one "
                "INPUT node; set it on dataloader.train.mapper.input)"
            )


def lazy_to_cfg(lazy: DictConfig, *, where: str = "LazyConfig") -> CfgNode:
    """The ``CfgNode`` (defaults of :func:`cxr.config.get_cfg` + the lazy values) that the
    Trainer, ``tools/eval.py`` and ``tools/predict.py`` use.

    Args:
        lazy: a loaded LazyConfig (interpolations are resolved).
        where: the config file, for error messages.

    Raises:
        LazyConfigError: a key without a CfgNode counterpart, or a value of the wrong type.
    """
    flat = _flatten(OmegaConf.to_container(lazy, resolve=True))
    _check_test_input(flat, where)
    cfg = get_cfg()
    for key, value in flat.items():
        if (
            key.endswith("_target_")
            or key in IGNORED
            or key.startswith("dataloader.test.mapper.input.")
        ):
            continue
        cfg_key = cfg_key_of(key)
        if cfg_key is None:
            raise LazyConfigError(f"{where}: {key} has no config counterpart (see cxr.engine.lazy)")
        _set_cfg(cfg, cfg_key, value, f"{where}: {key}")
    return cfg


def _plain(x: Any) -> Any:
    """Plain dicts / lists of ``instantiate``'s arguments (which may be omegaconf nodes)."""
    if OmegaConf.is_config(x):
        return OmegaConf.to_container(x, resolve=True)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return [_plain(v) for v in x] if isinstance(x, (list, tuple)) else x


def _cfg_with(section: str, keys: dict, where: str, **leaves: Any) -> CfgNode:
    """``get_cfg()`` with the lower-case ``keys`` set under ``section`` (e.g. ``"MODEL"``)."""
    cfg = get_cfg()
    for k, v in _flatten(_plain(keys)).items():
        _set_cfg(cfg, f"{section}.{k.upper()}", v, f"{where}.{k}")
    for cfg_key, v in leaves.items():
        _set_cfg(cfg, cfg_key.replace("__", "."), _plain(v), where)
    return cfg


def cxr_model(**model: Any) -> torch.nn.Module:
    """``LazyCall`` target of ``model``: detectron2's ``build_model`` of ``MODEL.*`` = ``model``
    (lower-case keys, nested dicts for sub-nodes); every other key at its default."""
    from detectron2.modeling import build_model

    cfg = _cfg_with("MODEL", model, "model")
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return build_model(cfg)


def cxr_mapper(*, is_train: bool, input: dict, skip_bad_images: bool = False):
    """``LazyCall`` target of ``dataloader.*.mapper``: the mapper named by ``input["mapper"]``
    (``INPUT.*`` = ``input``), as :func:`cxr.data.build_mapper` builds it."""
    from ..data import build_mapper

    cfg = _cfg_with("INPUT", input, "mapper.input", DATALOADER__SKIP_BAD_IMAGES=skip_bad_images)
    return build_mapper(cfg, is_train)


def cxr_train_loader(*, dataset: list, mapper, total_batch_size: int, num_workers: int,
                     sampler: dict, seed: int = -1, aspect_ratio_grouping: bool = True):  # fmt: skip
    """``LazyCall`` target of ``dataloader.train``: detectron2's train loader over ``dataset``
    with the resumable sampler named by ``sampler["sampler_train"]`` (``DATALOADER.*``);
    without ``aspect_ratio_grouping`` the workers hand over packed batches
    (:func:`cxr.data.loader.build_train_loader`)."""
    from ..data.loader import build_train_loader
    from ..data.samplers import build_train_sampler

    cfg = _cfg_with("DATALOADER", sampler, "sampler", SOLVER__IMS_PER_BATCH=total_batch_size,
                    SEED=seed)  # fmt: skip
    return build_train_loader(
        dataset, mapper, sampler=build_train_sampler(cfg, dataset),
        total_batch_size=total_batch_size, aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
    )  # fmt: skip


def cxr_test_loader(*, dataset: list, mapper, num_workers: int = 0):
    """``LazyCall`` target of ``dataloader.test``: detectron2's inference loader."""
    return build_detection_test_loader(dataset, mapper=mapper, num_workers=num_workers)


def cxr_optimizer(*, model: torch.nn.Module, **solver: Any) -> torch.optim.Optimizer:
    """``LazyCall`` target of ``optimizer`` (set ``optimizer.model`` first): detectron2's
    ``build_optimizer`` with ``SOLVER.*`` = ``solver`` (``lr`` is ``BASE_LR``)."""
    from detectron2.solver import build_optimizer

    solver = dict(solver)
    lr = solver.pop("lr", None)
    cfg = _cfg_with(
        "SOLVER", solver, "optimizer", **({} if lr is None else {"SOLVER__BASE_LR": lr})
    )
    return build_optimizer(cfg, model)


def cxr_lr_multiplier(*, max_iter: int, **solver: Any):
    """``LazyCall`` target of ``lr_multiplier``: the fvcore ``ParamScheduler`` (multiplier of
    the base LR over ``[0, 1)`` of training) that detectron2's ``build_lr_scheduler`` uses."""
    from detectron2.solver import build_lr_scheduler

    solver = dict(solver)
    name = solver.pop("name", None)
    leaves = {"SOLVER__MAX_ITER": max_iter, **({"SOLVER__LR_SCHEDULER_NAME": name} if name else {})}
    cfg = _cfg_with("SOLVER", solver, "lr_multiplier", **leaves)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return build_lr_scheduler(cfg, opt)._multiplier
