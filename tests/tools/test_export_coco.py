"""tools/export_coco.py: a registered set to a COCO GT file that pycocotools reads."""

import json
import os

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


def _detections(gt: dict) -> list[dict]:
    """Every GT box found (score 0.9) plus a false positive of class 1 on each image."""
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 0.9} for a in gt["annotations"]]  # fmt: skip
    dets += [{"image_id": im["id"], "category_id": 1, "bbox": [1.0, 1.0, 8.0, 8.0], "score": 0.95}
             for im in gt["images"]]  # fmt: skip
    return dets


def test_exported_gt_finds_its_images_in_files_mode(tiny_dataset, tmp_path):
    """export_coco's file names are relative to info.image_root (absolute), so tools/eval.py's
    files mode draws the galleries from the films without --image-root, from any folder; a GT
    file whose images are not found gives one warning line naming --image-root."""
    from detectron2.data import DatasetCatalog

    work = tmp_path / "elsewhere"
    work.mkdir()
    gt_path = work / "gt.json"
    load_tool("export_coco").main(["--dataset", tiny_dataset, "--output", str(gt_path)])
    gt = json.load(open(gt_path))
    files = sorted(d["file_name"] for d in DatasetCatalog.get(tiny_dataset))
    root = gt["info"]["image_root"]
    assert sorted(os.path.join(root, im["file_name"]) for im in gt["images"]) == files
    (work / "det.json").write_text(json.dumps(_detections(gt)))
    args = ["--gt-json", str(gt_path), "--detections", str(work / "det.json"), "--no-plots"]
    load_tool("eval").main([*args, "--output", str(tmp_path / "ok")])
    page = (tmp_path / "ok" / "report.html").read_text(encoding="utf-8")
    assert "image not available" not in page and page.count("data:image/png") >= 4
    assert "Gallery" not in (tmp_path / "ok" / "log.txt").read_text()

    del gt["info"]  # a GT file that does not say where its images are
    gt_path.write_text(json.dumps(gt))
    load_tool("eval").main([*args, "--output", str(tmp_path / "bad")])
    log = (tmp_path / "bad" / "log.txt").read_text().splitlines()
    gallery = [ln for ln in log if "Gallery" in ln or "cannot read" in ln]
    assert len(gallery) == 1 and "could not be read" in gallery[0]
    assert "pass --image-root FOLDER" in gallery[0]
