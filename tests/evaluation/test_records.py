"""cxr.evaluation.records: the one DetectionSet builder, its patient ids and COCO category ids."""

import numpy as np
import pytest
from detectron2.data.catalog import Metadata
from detectron2.structures import BoxMode

from cxr.evaluation.records import coco_category_ids, dataset_to_detection_set, patient_ids_of


def test_builder_orders_converts_and_keeps_coco_boxes_exact():
    recs = [
        {"image_id": "b", "patient_id": 7, "annotations": [
            {"bbox": [0.1, 0.2, 0.3, 0.7], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1}]},
        {"image_id": "a", "annotations": [
            {"bbox": [1, 2, 5, 8], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "id": 9}]},
    ]  # fmt: skip
    preds = [{"image_id": "b", "boxes": [[0.1, 0.2, 0.3, 0.7]], "scores": [0.5], "classes": [1],
              "bbox_mode": BoxMode.XYWH_ABS}]  # fmt: skip
    ds, order, patients = dataset_to_detection_set(recs, 2, preds)
    assert order == ["a", "b"] and patients == ["image:a", "7"]
    assert ds.gt_image.tolist() == [0, 1] and ds.gt_ids.tolist() == [9, 2]
    assert ds.gt_boxes_xywh[1].tolist() == [0.1, 0.2, 0.3, 0.7]  # bit-exact, as in the file
    assert ds.gt_boxes[0].tolist() == [1, 2, 5, 8] and ds.gt_boxes_xywh[0].tolist() == [1, 2, 4, 6]
    assert ds.dt_boxes_xywh.tolist() == [[0.1, 0.2, 0.3, 0.7]] and ds.dt_image.tolist() == [1]
    np.testing.assert_allclose(ds.dt_boxes, [[0.1, 0.2, 0.4, 0.9]])
    assert patient_ids_of([{"image_id": 1}, {"image_id": 2}]) is None


def test_builder_names_the_bad_field():
    bad = [{"image_id": 3, "annotations": [{"bbox": [0, 0, 1, 1], "category_id": 5}]}]
    with pytest.raises(ValueError, match=r"set: image 3, annotation 0: field category_id=5"):
        dataset_to_detection_set(bad, 2, [], "set")
    with pytest.raises(ValueError, match="not in the set"):
        dataset_to_detection_set([{"image_id": 1}], 2, [{"image_id": 2, "scores": [1]}], "set")


def test_coco_category_ids():
    assert coco_category_ids(Metadata(name="x"), 3) == {0: 1, 1: 2, 2: 3}
    m = Metadata(name="y", thing_dataset_id_to_contiguous_id={5: 0, 9: 1})
    assert coco_category_ids(m, 2) == {0: 5, 1: 9}
