"""tools/export_coco.py: a registered set to a COCO GT file that pycocotools reads."""

import json

import pytest

from .util import load_tool


def test_export_coco_tool(tiny_dataset, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "gt.json"
    counts = load_tool("export_coco").main(["--dataset", tiny_dataset, "--output", str(out)])
    assert counts == {"images": 4, "annotations": 3, "categories": 2}
    coco = COCO(str(out))
    assert sorted(coco.getCatIds()) == [1, 2]
    assert [c["name"] for c in coco.loadCats([1, 2])] == ["a", "b"]
    assert json.load(open(out))["images"][1]["patient_id"] == "p1"
    with pytest.raises(SystemExit, match="not registered"):
        load_tool("export_coco").main(["--dataset", "no_such_set", "--output", str(out)])
