"""cxr.apps.predictor: output files, operating points, output-folder checks."""

import csv
import os

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from cxr.apps.predictor import predict_files

from ..conftest import write_tiny_images
from ..data.dataformats import write_dicom


class FakePredictor:
    """Two boxes per image: class 0 at 0.9, class 1 at 0.2."""

    def __init__(self):
        self.calls = 0

    def __call__(self, img):
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        self.calls += 1
        inst = Instances(img.shape[:2])
        inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 20.0, 30.0], [5.0, 5.0, 9.0, 9.0]]))
        inst.scores = torch.tensor([0.9, 0.2])
        inst.pred_classes = torch.tensor([0, 1])
        return {"instances": inst}


def test_predict_files_outputs_and_thresholds(tmp_path):
    imgs = tmp_path / "in"
    write_tiny_images(str(imgs), n=3)
    (imgs / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    stats = predict_files(FakePredictor(), [str(imgs)], str(out), ["a", "b"], {"b": 0.1}, 0.5)
    assert stats == {
        "images": 3,
        "detections": 6,
        "errors": 1,
        "not_images": 0,
        "positive_images": 3,
    }
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 6 and rows[0]["class"] == "a" and float(rows[0]["x2"]) == 20.0
    finds = list(csv.DictReader(open(out / "findings.csv")))
    assert [f["findings"] for f in finds] == ["a;b"] * 3  # b's operating point 0.1 <= 0.2
    assert len(os.listdir(out / "overlays")) == 3
    assert "broken.png" in open(out / "errors.csv").read()
    stats = predict_files(
        FakePredictor(), [str(imgs)], str(tmp_path / "o2"), ["a", "b"], None, 0.5, overlays=False
    )
    finds = list(csv.DictReader(open(tmp_path / "o2" / "findings.csv")))
    assert [f["findings"] for f in finds] == ["a"] * 3


def test_dicom_by_content_and_non_images_listed(tmp_path):
    """An extensionless DICOM (PACS export) is predicted on; a text file is listed as not an
    image in errors.csv; hidden files are passed over; the file modes are plain-open ones."""
    imgs = tmp_path / "in"
    imgs.mkdir()
    write_dicom(str(imgs / "IM0001"), np.full((40, 50), 100, np.uint8))
    (imgs / "notes.txt").write_text("not an image")
    (imgs / ".DS_Store").write_bytes(b"\0" * 200)
    out = tmp_path / "out"
    stats = predict_files(FakePredictor(), [str(imgs)], str(out), ["a", "b"], None, 0.5)
    assert stats["images"] == 1 and stats["not_images"] == 1 and stats["errors"] == 1
    rows = list(csv.DictReader(open(out / "findings.csv")))
    assert [os.path.basename(r["file"]) for r in rows] == ["IM0001"]
    errors = list(csv.DictReader(open(out / "errors.csv")))
    assert [os.path.basename(e["file"]) for e in errors] == ["notes.txt"]
    assert "not an image" in errors[0]["error"]
    umask = os.umask(0)
    os.umask(umask)
    for f in ("predictions.csv", "findings.csv", "errors.csv"):
        assert os.stat(out / f).st_mode & 0o777 == 0o666 & ~umask, f


def test_nothing_readable_gives_zero_images(tmp_path):
    imgs = tmp_path / "in"
    imgs.mkdir()
    (imgs / "a.txt").write_text("x")
    stats = predict_files(FakePredictor(), [str(imgs)], str(tmp_path / "out"), ["a", "b"])
    assert stats["images"] == 0 and stats["errors"] == 1


class ScriptedPredictor:
    """Returns the given (boxes XYXY_ABS, scores, classes) for each call, in order."""

    def __init__(self, outputs):
        self.outputs = list(outputs)

    def __call__(self, img):
        boxes, scores, classes = self.outputs.pop(0)
        inst = Instances(img.shape[:2])
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
        return {"instances": inst}


def test_eval_and_predict_make_the_same_findings(tmp_path):
    """Same detections and thresholds through the evaluator's image-level path and
    predict_files: identical per-image findings, including a class whose operating point is 0.0
    (an old thresholds.json) on images without a detection of it."""
    from cxr.evaluation.medical import compute_medical_metrics
    from cxr.evaluation.operating_points import positive_findings
    from cxr.evaluation.records import dataset_to_detection_set

    names = ["a", "b", "c"]
    imgs = tmp_path / "in"
    dicts = write_tiny_images(str(imgs), n=5)
    rng = np.random.default_rng(3)
    outputs = []
    for i in range(5):
        n = int(rng.integers(0, 4))
        xy = rng.uniform(0, 30, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(4, 20, (n, 2))]
        scores = np.round(rng.choice([0.05, 0.25, 0.3, 0.5, 0.7], n), 2)
        outputs.append((boxes, scores, rng.integers(0, 3, n)))
    thresholds, cm = {"a": 0.0, "b": 0.5}, 0.3  # c uses cm_threshold
    stats = predict_files(
        ScriptedPredictor(outputs), [str(imgs)], str(tmp_path / "out"), names, thresholds, cm
    )
    assert stats["images"] == 5
    predicted = [
        set(r["findings"].split(";")) - {"No finding"}
        for r in csv.DictReader(open(tmp_path / "out" / "findings.csv"))
    ]
    preds = [
        {"image_id": d["image_id"], "boxes": b, "scores": s, "classes": c}
        for d, (b, s, c) in zip(dicts, outputs)
    ]
    dset, ids, _ = dataset_to_detection_set(dicts, 3, preds)
    assert ids == [d["image_id"] for d in dicts]
    res = compute_medical_metrics(dset, names, thresholds=thresholds, cm_threshold=cm)
    decided = positive_findings(res.scores, res.thresholds[None, :])
    evaluated = [{n for n, p in zip(names, row) if p} for row in decided]
    assert evaluated == predicted
    # and the evaluator's counts are those decisions
    for c, n in enumerate(names):
        il = res.metrics["image_level"]["per_class"][n]
        assert il["tp"] + il["fp"] == sum(n in f for f in predicted)
    assert any("a" not in f for f in predicted)  # class a (threshold 0.0) is not everywhere


def test_classifier_gradcam_overlay_explains_the_top_positive_finding():
    """Hand-set classifier: class 0 answers brightness (its map covers the bright square),
    class 1 only darkness (an empty map); the overlay shows the map of the finding chosen."""
    from types import SimpleNamespace

    import detectron2.data.transforms as T
    from cxr_runtime.predict import PredictedImage
    from torch import nn

    from cxr.apps.predictor import ClassifierGradcamOverlay
    from cxr.modeling.gradcam import classifier_cam, overlay
    from cxr.modeling.meta_arch.classifier import CXRClassifier

    from ..modeling.test_gradcam import _BrightnessTrunk, _image

    head = nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
        head.bias.zero_()
    model = CXRClassifier(trunk=_BrightnessTrunk(), head=head, num_classes=2,
                          pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3).eval()  # fmt: skip
    predictor = SimpleNamespace(model=model, aug=T.ResizeShortestEdge(64, 64), input_format="BGR")
    image = _image()["image"].permute(1, 2, 0).numpy()
    expected = [overlay(image[:, :, 0], classifier_cam(model, _image(), c))[:, :, ::-1]
                for c in (0, 1)]  # fmt: skip
    assert not np.array_equal(expected[0], expected[1])
    none = np.zeros((0, 4))

    def explained(image_scores, thresholds) -> int:
        p = PredictedImage(0, "x.png", image, none, np.zeros(0), np.zeros(0, np.int64),
                           np.zeros(0, bool), np.array(image_scores))  # fmt: skip
        bgr = ClassifierGradcamOverlay(predictor, ["bright", "dark"], thresholds)(p)["_gradcam"]
        below_text = slice(20, None)  # the class name is written in the top rows
        return [np.array_equal(bgr[below_text], e[below_text]) for e in expected].index(True)

    assert explained([0.9, 0.6], [0.5, 0.5]) == 0  # both positive: the higher score
    assert explained([0.9, 0.6], [0.95, 0.5]) == 1  # only "dark" positive: it, not the top score
    assert explained([0.4, 0.3], [0.5, 0.5]) == 0  # none positive: the top class


def test_gradcam_refuses_a_model_it_cannot_explain_before_writing(tmp_path):
    write_tiny_images(str(tmp_path / "in"), n=1)
    fake = FakePredictor()
    fake.model = torch.nn.Linear(2, 2)  # e.g. an ONNX Runtime session behind the predictor
    with pytest.raises(ValueError, match="--gradcam explains .* not Linear"):
        predict_files(fake, [str(tmp_path / "in")], str(tmp_path / "out"), ["a", "b"],
                      gradcam=True)  # fmt: skip
    assert not (tmp_path / "out").exists() and fake.calls == 0
