"""The records container of the detection metrics, :class:`DetectionSet`, and its one builder,
:func:`dataset_to_detection_set`: from detectron2-style ground-truth records and per-image
prediction records.

Both the detectron2 evaluator (dataset dicts of a registered set) and the COCO-JSON file mode
(records read from a COCO GT file and a COCO results file) go through
:func:`dataset_to_detection_set`, so validation, box conversion and the patient-id fallback
are the same everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from detectron2.structures import BoxMode

__all__ = ["DetectionSet", "coco_category_ids", "dataset_to_detection_set", "patient_ids_of"]


def _f64(a, shape_tail=()) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        a = a.reshape((0,) + shape_tail)
    return a


@dataclasses.dataclass
class DetectionSet:
    """Ground truth and detections of one evaluation set, as flat arrays.

    Attributes:
        num_images: N, images in the set (including images without boxes or detections).
        num_classes: C.
        gt_image, gt_class: (G,) int image / class index of each ground-truth box.
        gt_boxes: (G, 4) float64 XYXY_ABS pixels.
        dt_image, dt_class: (D,) int image / class index of each detection.
        dt_boxes: (D, 4) float64 XYXY_ABS pixels.
        dt_scores: (D,) float64 confidence.
        gt_area: (G,) area used by COCO's area ranges (default: box area, pixels^2).
        gt_crowd: (G,) bool COCO ``iscrowd`` (COCO AP only; other metrics treat them as boxes).
        gt_ids: (G,) int COCO annotation ids (COCO AP only; default 1..G).
        gt_boxes_xywh, dt_boxes_xywh: optional COCO XYWH_ABS boxes as read from COCO JSON; when
            given, :func:`coco_ap` uses them untouched so that it agrees bit for bit with
            pycocotools (which computes ``x + w`` itself).

    Order matters for COCO tie-breaking exactly as in pycocotools: image index = rank of the
    image id in sorted order, class index = rank of the category id, and detections of one image
    keep the order of the results file.
    """

    num_images: int
    num_classes: int
    gt_image: np.ndarray
    gt_class: np.ndarray
    gt_boxes: np.ndarray
    dt_image: np.ndarray
    dt_class: np.ndarray
    dt_boxes: np.ndarray
    dt_scores: np.ndarray
    gt_area: np.ndarray | None = None
    gt_crowd: np.ndarray | None = None
    gt_ids: np.ndarray | None = None
    gt_boxes_xywh: np.ndarray | None = None
    dt_boxes_xywh: np.ndarray | None = None

    def __post_init__(self):
        self.gt_image = np.asarray(self.gt_image, dtype=np.int64).reshape(-1)
        self.gt_class = np.asarray(self.gt_class, dtype=np.int64).reshape(-1)
        self.dt_image = np.asarray(self.dt_image, dtype=np.int64).reshape(-1)
        self.dt_class = np.asarray(self.dt_class, dtype=np.int64).reshape(-1)
        self.gt_boxes = _f64(self.gt_boxes, (4,)).reshape(-1, 4)
        self.dt_boxes = _f64(self.dt_boxes, (4,)).reshape(-1, 4)
        self.dt_scores = _f64(self.dt_scores).reshape(-1)
        G, D = len(self.gt_image), len(self.dt_image)
        if self.gt_boxes_xywh is None:
            b = self.gt_boxes
            self.gt_boxes_xywh = np.stack(
                [b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
            )
        if self.dt_boxes_xywh is None:
            b = self.dt_boxes
            self.dt_boxes_xywh = np.stack(
                [b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
            )
        self.gt_boxes_xywh = _f64(self.gt_boxes_xywh, (4,)).reshape(-1, 4)
        self.dt_boxes_xywh = _f64(self.dt_boxes_xywh, (4,)).reshape(-1, 4)
        if self.gt_area is None:
            self.gt_area = self.gt_boxes_xywh[:, 2] * self.gt_boxes_xywh[:, 3]
        self.gt_area = _f64(self.gt_area).reshape(-1)
        self.gt_crowd = (
            np.zeros(G, bool)
            if self.gt_crowd is None
            else np.asarray(self.gt_crowd, bool).reshape(-1)
        )
        self.gt_ids = (
            np.arange(1, G + 1) if self.gt_ids is None else np.asarray(self.gt_ids).reshape(-1)
        )
        for name, arr, n in [
            ("gt_class", self.gt_class, G),
            ("gt_boxes", self.gt_boxes, G),
            ("gt_area", self.gt_area, G),
            ("gt_crowd", self.gt_crowd, G),
            ("gt_ids", self.gt_ids, G),
            ("gt_boxes_xywh", self.gt_boxes_xywh, G),
            ("dt_class", self.dt_class, D),
            ("dt_boxes", self.dt_boxes, D),
            ("dt_scores", self.dt_scores, D),
            ("dt_boxes_xywh", self.dt_boxes_xywh, D),
        ]:
            if len(arr) != n:
                raise ValueError(f"DetectionSet: field {name} has {len(arr)} rows, expected {n}")
        for name, arr, hi in [
            ("gt_image", self.gt_image, self.num_images),
            ("dt_image", self.dt_image, self.num_images),
            ("gt_class", self.gt_class, self.num_classes),
            ("dt_class", self.dt_class, self.num_classes),
        ]:
            if len(arr) and (arr.min() < 0 or arr.max() >= hi):
                raise ValueError(f"DetectionSet: field {name} has values outside [0, {hi})")

    @property
    def gt_counts(self) -> np.ndarray:
        """(N, C) int: ground-truth boxes per image and class."""
        m = np.zeros((self.num_images, self.num_classes), np.int64)
        np.add.at(m, (self.gt_image, self.gt_class), 1)
        return m


def _sorted_ids(ids: list) -> list:
    """Image ids in sorted order (pycocotools' order) when comparable, else as given."""
    try:
        return sorted(ids)
    except TypeError:
        return list(ids)


def patient_ids_of(records: Sequence[dict]) -> list[str] | None:
    """The bootstrap unit of each record: its ``patient_id``, or ``"image:<image_id>"`` for a
    record without one; None when no record has a patient id (resample images)."""
    if all(r.get("patient_id") is None for r in records):
        return None
    return [
        str(r["patient_id"]) if r.get("patient_id") is not None else f"image:{r['image_id']}"
        for r in records
    ]


def _both_formats(box, mode, where: str) -> tuple[list[float], list[float]]:
    """``(xyxy, xywh)`` of one box in ``mode``; XYWH input is kept bit-exact (pycocotools
    computes ``x + w`` itself, so COCO AP must see the file's numbers)."""
    try:
        box = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field bbox has a non-number: {box!r}") from None
    if len(box) != 4:
        raise ValueError(f"{where}: field bbox must have 4 numbers, got {box!r}")
    if mode == BoxMode.XYWH_ABS:
        xywh = box
        xyxy = [box[0], box[1], box[0] + box[2], box[1] + box[3]]
    else:
        xyxy = [float(v) for v in BoxMode.convert(box, mode, BoxMode.XYXY_ABS)]
        xywh = [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]
    if not np.all(np.isfinite(xyxy)) or xywh[2] < 0 or xywh[3] < 0:
        raise ValueError(f"{where}: field bbox {box} is not a valid box")
    return xyxy, xywh


def _ground_truth(order, by_id, num_classes: int, name: str) -> dict:
    gt = {k: [] for k in ("image", "class", "xyxy", "xywh", "area", "crowd", "ids")}
    for k, iid in enumerate(order):
        for j, a in enumerate(by_id[iid].get("annotations", [])):
            where = f"{name}: image {iid!r}, annotation {j}"
            cat = a.get("category_id")
            if not isinstance(cat, (int, np.integer)) or not 0 <= cat < num_classes:
                raise ValueError(f"{where}: field category_id={cat!r} not in [0, {num_classes})")
            xyxy, xywh = _both_formats(a.get("bbox"), a.get("bbox_mode", BoxMode.XYXY_ABS), where)
            gt["image"].append(k), gt["class"].append(int(cat))
            gt["xyxy"].append(xyxy), gt["xywh"].append(xywh)
            gt["area"].append(float(a["area"]) if "area" in a else xywh[2] * xywh[3])
            gt["crowd"].append(bool(a.get("iscrowd", 0)))
            gt["ids"].append(a.get("id", len(gt["ids"]) + 1))
    return gt


def _detections(predictions, index: dict, num_classes: int, name: str) -> dict:
    dt = {k: [] for k in ("image", "class", "xyxy", "xywh", "scores")}
    for p in predictions:
        iid = p["image_id"]
        if iid not in index:
            raise ValueError(f"{name}: prediction for image_id {iid!r}, which is not in the set")
        n = len(p["scores"])
        if n == 0:
            continue
        cls = np.asarray(p["classes"], np.int64).reshape(n)
        if cls.min() < 0 or cls.max() >= num_classes:
            raise ValueError(
                f"{name}: prediction for image {iid!r}: field classes has values outside "
                f"[0, {num_classes})"
            )
        boxes = np.asarray(p["boxes"], np.float64).reshape(n, 4)
        if p.get("bbox_mode", BoxMode.XYXY_ABS) == BoxMode.XYWH_ABS:
            xywh, xyxy = boxes, np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]
        else:
            xyxy, xywh = boxes, np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
        dt["image"].append(np.full(n, index[iid])), dt["class"].append(cls)
        dt["xyxy"].append(xyxy), dt["xywh"].append(xywh)
        dt["scores"].append(np.asarray(p["scores"], np.float64).reshape(n))
    return dt


def _cat(xs: list, shape: tuple) -> np.ndarray:
    return np.concatenate(xs) if xs else np.zeros(shape)


def dataset_to_detection_set(
    dataset_dicts: Sequence[dict],
    num_classes: int,
    predictions: Sequence[dict],
    dataset_name: str = "dataset",
) -> tuple[DetectionSet, list, list[str] | None]:
    """Build a :class:`DetectionSet` from ground-truth records and per-image predictions.

    Args:
        dataset_dicts: detectron2 dicts: ``image_id``, ``annotations`` (``bbox`` in any
            ``bbox_mode``, contiguous ``category_id``, optional ``iscrowd`` / ``area`` / ``id``),
            optional ``patient_id``.
        num_classes: C.
        predictions: dicts ``{"image_id", "boxes": (n, 4), "scores": (n,), "classes": (n,)}``
            with boxes XYXY_ABS, or XYWH_ABS when the dict has ``"bbox_mode": BoxMode.XYWH_ABS``
            (kept bit-exact for COCO AP); images without an entry have no detections.
        dataset_name: named in error messages.

    Returns:
        ``(set, image_ids, patient_ids)``: images ordered by sorted image id; the patient id
        per image from :func:`patient_ids_of` (None when no record has one).

    Raises:
        ValueError naming the dataset, image and field on bad annotations / predictions.
    """
    ids = [d["image_id"] for d in dataset_dicts]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{dataset_name}: field image_id is not unique across the records")
    order = _sorted_ids(ids)
    index = {i: k for k, i in enumerate(order)}
    by_id = {d["image_id"]: d for d in dataset_dicts}
    gt = _ground_truth(order, by_id, num_classes, dataset_name)
    dt = _detections(predictions, index, num_classes, dataset_name)
    dset = DetectionSet(
        num_images=len(order),
        num_classes=num_classes,
        gt_image=np.asarray(gt["image"], np.int64),
        gt_class=np.asarray(gt["class"], np.int64),
        gt_boxes=np.asarray(gt["xyxy"], np.float64).reshape(-1, 4),
        gt_boxes_xywh=np.asarray(gt["xywh"], np.float64).reshape(-1, 4),
        gt_area=np.asarray(gt["area"], np.float64),
        gt_crowd=np.asarray(gt["crowd"], bool),
        gt_ids=np.asarray(gt["ids"]),
        dt_image=_cat(dt["image"], (0,)).astype(np.int64),
        dt_class=_cat(dt["class"], (0,)).astype(np.int64),
        dt_boxes=_cat(dt["xyxy"], (0, 4)),
        dt_boxes_xywh=_cat(dt["xywh"], (0, 4)),
        dt_scores=_cat(dt["scores"], (0,)),
    )
    return dset, order, patient_ids_of([by_id[i] for i in order])


def coco_category_ids(metadata, num_classes: int) -> dict[int, int]:
    """Contiguous class index -> COCO ``category_id`` of a data set.

    The data set's own ids when its metadata has ``thing_dataset_id_to_contiguous_id`` (a
    registered COCO file), else 1-based in ``thing_classes`` order (COCO's convention). Both
    ``predictions.json`` and ``tools/export_coco.py`` use this, so their ids agree.
    """
    id_map = metadata.get("thing_dataset_id_to_contiguous_id", None)
    if id_map:
        return {int(v): int(k) for k, v in id_map.items()}
    return {i: i + 1 for i in range(num_classes)}
