"""COCO JSON files: reading a GT file + a results file into evaluation records, and writing a
registered data set as COCO ground truth.

Id conventions (shared with ``predictions.json``, see docs/evaluation.md): image ids are the
data set's ``image_id`` (for the cxr data sets, the file stem); category ids are 1-based in
``thing_classes`` order (:func:`~cxr.evaluation.records.coco_category_ids`); each result also
carries its class as ``category_name``, so files whose ids disagree are matched by name.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from typing import Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..evaluation.records import DetectionSet
from ..evaluation.records import coco_category_ids, dataset_to_detection_set
from ..fileio import read_json, write_text_atomic

__all__ = ["dataset_to_coco", "export_coco", "load_coco_files"]

logger = logging.getLogger(__name__)

#: The ``info`` entry of a COCO GT file naming the folder its relative ``file_name`` are in.
IMAGE_ROOT_KEY = "image_root"


def _box(v, path: str, where: str, positive: bool = False) -> list[float]:
    """``[x, y, w, h]`` floats; ``w, h >= 0`` (``> 0`` when ``positive``, for GT boxes)."""
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        raise ValueError(f"{path}: {where}: field bbox must be [x, y, w, h], got {v!r}")
    try:
        b = [float(x) for x in v]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {where}: field bbox has a non-number: {v!r}") from None
    if not all(math.isfinite(x) for x in b) or b[2] < 0 or b[3] < 0:
        raise ValueError(f"{path}: {where}: field bbox is not a valid box: {v!r}")
    if positive and (b[2] == 0 or b[3] == 0):
        raise ValueError(f"{path}: {where}: field bbox has zero width or height: {v!r}")
    return b


def _hashable(v, path: str, where: str, field: str):
    try:
        hash(v)
    except TypeError:
        raise ValueError(f"{path}: {where}: field {field}={v!r} is not a valid id") from None
    return v


def _entry(d, path: str, where: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{path}: {where} is not an object")
    _hashable(d.get("image_id"), path, where, "image_id")
    _hashable(d.get("category_id"), path, where, "category_id")
    return d


def _gt_header(gt, gt_json: str) -> tuple[list, list[dict], dict]:
    """``(sorted image ids, categories sorted by id, image id -> image)`` of a GT file."""
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list):
        raise ValueError(f"{gt_json}: field images (a list) is missing: not a COCO GT file")
    if not isinstance(gt.get("categories"), list) or not gt["categories"]:
        raise ValueError(f"{gt_json}: field categories (a non-empty list) is missing")
    try:
        img_ids = sorted({im["id"] for im in gt["images"]})
        cats = sorted(gt["categories"], key=lambda c: c["id"])
        by_id = {im["id"]: im for im in gt["images"]}
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{gt_json}: images / categories need an 'id' field ({e})") from None
    return img_ids, cats, by_id


def _gt_records(gt, gt_json: str, img_ids, by_id, cat_index) -> list[dict]:
    """One detectron2-style record per image (XYWH_ABS boxes, contiguous category ids)."""
    records = {i: {"image_id": i, "annotations": []} for i in img_ids}
    for i in img_ids:
        if by_id[i].get("patient_id") is not None:
            records[i]["patient_id"] = by_id[i]["patient_id"]
    annotations = gt.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"{gt_json}: field annotations must be a list")
    for j, a in enumerate(annotations):
        where = f"annotations[{j}]"
        _entry(a, gt_json, where)
        if a.get("image_id") not in records:
            raise ValueError(
                f"{gt_json}: {where}: field image_id={a.get('image_id')!r} is not an image"
            )
        if a.get("category_id") not in cat_index:
            raise ValueError(
                f"{gt_json}: {where}: field category_id={a.get('category_id')!r} is not a category"
            )
        b = _box(a.get("bbox"), gt_json, where, positive=True)
        area = a.get("area", b[2] * b[3])
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not area >= 0:
            raise ValueError(f"{gt_json}: {where}: field area must be a number >= 0, got {area!r}")
        records[a["image_id"]]["annotations"].append(
            {
                "bbox": b,
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": cat_index[a["category_id"]],
                "area": float(area),
                "iscrowd": int(bool(a.get("iscrowd", 0))),
                "id": a.get("id", j + 1),
            }
        )
    return [records[i] for i in img_ids]


def _category_resolver(cats: list[dict], results: list, gt_json: str, det_json: str):
    """``entry -> contiguous class index or None`` (None: category not in the GT).

    Results carrying ``category_name`` whose id -> name pairs disagree with the GT's are
    matched by name (with a warning); names the GT lacks are refused, naming both lists.
    """
    by_id = {c["id"]: k for k, c in enumerate(cats)}
    names = [str(c.get("name", c["id"])) for c in cats]
    by_name = {n: k for k, n in enumerate(names)}
    named = {
        (d.get("category_id"), str(d["category_name"]))
        for d in results
        if isinstance(d, dict) and d.get("category_name") is not None
    }
    if all(i in by_id and names[by_id[i]] == n for i, n in named):
        return lambda d: by_id.get(d.get("category_id"))
    det_names = sorted({n for _, n in named})
    gt_list = ", ".join(f"{c['id']}={n}" for c, n in zip(cats, names))
    det_list = ", ".join(f"{i}={n}" for i, n in sorted(named, key=str))
    if not set(det_names) <= set(by_name):
        raise ValueError(
            f"{det_json}: categories ({det_list}) match neither the ids nor the names of "
            f"{gt_json}'s categories ({gt_list}); nothing was scored"
        )
    logger.warning(
        "%s: category ids disagree with %s (%s vs %s): matching categories by name",
        det_json,
        gt_json,
        det_list,
        gt_list,
    )
    return lambda d: (
        by_name[str(d["category_name"])]
        if d.get("category_name") is not None
        else by_id.get(d.get("category_id"))
    )


def _result_records(results, det_json: str, gt_json: str, image_ids: set, category_of):
    """Per-image prediction records (XYWH_ABS, file order kept) and the kept COCO results."""
    by_image = defaultdict(lambda: {"boxes": [], "scores": [], "classes": []})
    kept, dropped = [], []
    for j, d in enumerate(results):
        where = f"entry {j}"
        _entry(d, det_json, where)
        if d.get("image_id") not in image_ids:
            raise ValueError(
                f"{det_json}: {where}: field image_id={d.get('image_id')!r} is not an image of "
                f"{gt_json}"
            )
        c = category_of(d)
        if c is None:
            dropped.append(d.get("category_id"))
            continue
        s = d.get("score")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise ValueError(f"{det_json}: {where}: field score must be a number, got {s!r}")
        b = _box(d.get("bbox"), det_json, where)
        rec = by_image[d["image_id"]]
        rec["boxes"].append(b), rec["scores"].append(float(s)), rec["classes"].append(c)
        kept.append(
            {**{k: d[k] for k in ("image_id", "category_id")}, "bbox": b, "score": float(s)}
        )
    if dropped:
        logger.warning(
            "%s: %d detections of categories not in %s were ignored (category ids %s)",
            det_json,
            len(dropped),
            gt_json,
            sorted(set(dropped), key=str),
        )
    records = [{"image_id": i, "bbox_mode": BoxMode.XYWH_ABS, **r} for i, r in by_image.items()]
    return records, kept


def load_coco_files(
    gt_json: str, detections_json: str
) -> tuple[DetectionSet, list[str], list, list | None, list[dict]]:
    """Read a COCO GT file and a COCO results file into a :class:`DetectionSet`.

    Images are ordered by sorted image id and classes by sorted category id (pycocotools'
    order); GT boxes keep their ``area`` and ``iscrowd``; detections of categories absent from
    the GT are dropped with a warning (pycocotools ignores them too). An image's optional
    ``patient_id`` field is the bootstrap unit. Results with ``category_name`` are matched by
    name when their ids disagree with the GT's (module docstring).

    Returns:
        ``(set, class_names, image_ids, patient_ids_or_None, results)``.

    Raises:
        ValueError naming the file, entry and field at fault.
    """
    gt = read_json(gt_json, "ground-truth")
    img_ids, cats, by_id = _gt_header(gt, gt_json)
    cat_index = {c["id"]: k for k, c in enumerate(cats)}
    names = [str(c.get("name", c["id"])) for c in cats]
    records = _gt_records(gt, gt_json, img_ids, by_id, cat_index)
    res = read_json(detections_json, "detections")
    if isinstance(res, dict) and isinstance(res.get("annotations"), list):
        res = res["annotations"]
    if not isinstance(res, list):
        raise ValueError(
            f"{detections_json}: expected a list of COCO results "
            "({image_id, category_id, bbox, score})"
        )
    category_of = _category_resolver(cats, res, gt_json, detections_json)
    preds, kept = _result_records(res, detections_json, gt_json, set(img_ids), category_of)
    dset, order, patients = dataset_to_detection_set(records, len(cats), preds, gt_json)
    return dset, names, order, patients, kept


def dataset_to_coco(dataset_name: str) -> dict:
    """A registered data set as a COCO ground-truth dict.

    Images: ``id`` = the record's ``image_id``, ``file_name`` = its path relative to the
    folder all the images are in, which ``info.image_root`` names (absolute), ``height`` /
    ``width``, plus ``patient_id`` when known. Categories: ids from
    :func:`~cxr.evaluation.records.coco_category_ids` (1-based in ``thing_classes`` order for
    the cxr data sets). Annotations: XYWH_ABS ``bbox``, ``area`` = w * h, ``iscrowd``, ids 1..n.
    """
    dicts = DatasetCatalog.get(dataset_name)
    classes = list(MetadataCatalog.get(dataset_name).thing_classes)
    cat_ids = coco_category_ids(MetadataCatalog.get(dataset_name), len(classes))
    files = [os.path.abspath(d["file_name"]) for d in dicts]
    root = os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""
    images, annotations = [], []
    for d, path in zip(dicts, files):
        im = {"id": d["image_id"], "file_name": os.path.relpath(path, root)}
        im.update({k: d[k] for k in ("height", "width", "patient_id") if d.get(k) is not None})
        images.append(im)
        for a in d.get("annotations", []):
            x, y, w, h = (
                float(v) for v in BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYWH_ABS)
            )
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": d["image_id"],
                    "category_id": cat_ids[int(a["category_id"])],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(a.get("iscrowd", 0)),
                }
            )
    categories = [{"id": cat_ids[k], "name": n} for k, n in enumerate(classes)]
    info = {"description": f"cxr data set {dataset_name}", IMAGE_ROOT_KEY: root}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def export_coco(dataset_name: str, output: str) -> dict:
    """Write :func:`dataset_to_coco` of ``dataset_name`` to ``output`` (atomically).

    Returns:
        ``{"images": n, "annotations": n, "categories": n}``.
    """
    coco = dataset_to_coco(dataset_name)
    write_text_atomic(output, json.dumps(coco))
    return {k: len(coco[k]) for k in ("images", "annotations", "categories")}


def coco_file_names(gt_json: str, image_ids: Sequence, image_root: str | None = None) -> list[str]:
    """The image file of each of ``image_ids`` in a COCO GT file (for report thumbnails).

    Args:
        image_root: folder that relative ``file_name`` entries are in (default: the file's
            ``info.image_root``, as :func:`export_coco` writes it, relative to the GT file's
            folder when relative; else the GT file's folder). Images without ``file_name``
            get "".

    Returns:
        paths in the order of ``image_ids``.
    """
    gt = read_json(gt_json, "ground-truth")
    here = os.path.dirname(os.path.abspath(gt_json))
    info = gt.get("info") if isinstance(gt.get("info"), dict) else {}
    root = image_root or os.path.join(here, str(info.get(IMAGE_ROOT_KEY) or ""))
    names = {im["id"]: str(im.get("file_name") or "") for im in gt["images"]}
    return [os.path.join(root, names[i]) if names[i] else "" for i in image_ids]
