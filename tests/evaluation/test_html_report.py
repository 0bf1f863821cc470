"""report.html and its galleries: hand-built cases, the FROC matcher as reference, size bounds."""

import html.parser
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from cxr.evaluation import CXREvaluator
from cxr.evaluation import metrics as M
from cxr.evaluation.gallery import (
    GT_COLOR,
    PRED_COLOR,
    _crop_window,
    case_thumbnail,
    operating_point_cases,
)
from cxr.evaluation.html_report import render_html_report, write_html_report
from cxr.evaluation.medical import compute_medical_metrics
from cxr.evaluation.records import dataset_to_detection_set

from ..conftest import write_tiny_images
from .report_case import (
    CLASS_NAMES,
    EXPECTED_FALSE_POSITIVES,
    EXPECTED_MISSED,
    THRESHOLD,
    build_report_case,
)


class _Page(html.parser.HTMLParser):
    """Collects img sources, gallery figures (class, kind, file) and every URL-bearing attribute."""

    def __init__(self):
        super().__init__()
        self.imgs, self.urls, self.figures, self.text = [], [], [], []
        self._class = self._kind = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href", "action", "poster", "data"):
            if k in a and k != "data":
                self.urls.append(a[k])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "div" and "data-class" in a:
            self._class = a["data-class"]
        if tag == "div" and "data-gallery" in a:
            self._kind = a["data-gallery"]
        if tag == "figure":
            self.figures.append((self._class, a["data-kind"], a["data-file"]))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


def _gallery(page: _Page, kind: str) -> dict:
    out = {n: [] for n in CLASS_NAMES}
    for c, k, f in page.figures:
        if k == kind:
            out[c].append(f)
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    ds, files = build_report_case(str(tmp_path_factory.mktemp("report_case")))
    res = compute_medical_metrics(ds, CLASS_NAMES, cm_threshold=THRESHOLD, bootstrap=30)
    return ds, files, res


def test_cases_of_the_hand_built_evaluation(case):
    ds, files, res = case
    cases = operating_point_cases(ds, res.thresholds, 0.4, gallery_size=8)
    for c, name in enumerate(CLASS_NAMES):
        fp = [os.path.basename(files[x.image_index]) for x in cases[c].false_positives]
        missed = [os.path.basename(files[x.image_index]) for x in cases[c].missed]
        assert fp == EXPECTED_FALSE_POSITIVES[name]
        assert missed == EXPECTED_MISSED[name]
    weak = cases[0].missed[0]
    assert weak.score == pytest.approx(0.3)  # the below-threshold detection on it
    assert cases[1].missed[0].score == 0.0  # nothing on the missed mass
    one = operating_point_cases(ds, res.thresholds, 0.4, gallery_size=1)
    assert [x.score for x in one[0].false_positives] == [0.95]
    assert one[0].num_false_positives == 2 and one[1].num_missed == 1


def _random_set(rng, n_img=40, n_cls=3):
    gi = rng.integers(0, n_img, 60)
    gc = rng.integers(0, n_cls, 60)
    xy = rng.uniform(0, 200, (60, 2))
    gb = np.c_[xy, xy + rng.uniform(10, 60, (60, 2))]
    # detections: jittered copies of most boxes (some duplicated) plus random boxes
    k = rng.choice(60, 80)
    db = np.r_[gb[k] + rng.normal(0, 6, (80, 4)), np.c_[xy[:30], xy[:30] + 30]]
    di = np.r_[gi[k], rng.integers(0, n_img, 30)]
    dc = np.r_[gc[k], rng.integers(0, n_cls, 30)]
    dsc = rng.uniform(0, 1, 110)
    return M.DetectionSet(n_img, n_cls, gi, gc, gb, di, dc, db, dsc)


def test_thumbnail_shows_the_film_region_with_both_colours(case):
    ds, files, res = case
    cases = operating_point_cases(ds, res.thresholds, 0.4)
    fp = cases[1].false_positives[0]  # the mass predicted beside the real one
    img = cv2.imread(files[fp.image_index], cv2.IMREAD_GRAYSCALE)
    jpg = case_thumbnail(img, fp, ds, CLASS_NAMES, THRESHOLD, size=160)
    thumb = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (160, 160, 3)

    def near(color):
        return (np.abs(thumb.astype(int) - np.array(color)).sum(2) < 90).sum()

    assert near(GT_COLOR) > 50 and near(PRED_COLOR) > 50
    # the window holds the box with context and stays inside the image
    left, top, side = _crop_window((100, 5, 127, 30), (128, 128), 1.0, 0.25)
    assert 0 <= left and left + side <= 128 and 0 <= top and top + side <= 128
    assert left <= 100 and top <= 5 and side >= 81


def test_report_is_self_contained_and_shows_the_cases(case, tmp_path):
    ds, files, res = case
    path = write_html_report(
        str(tmp_path / "report.html"), res, CLASS_NAMES, ds, files, gallery_size=8
    )
    text = open(path, encoding="utf-8").read()
    page = _parse(text)
    assert page.imgs and all(s.startswith("data:image/") for s in page.imgs)
    assert all(u.startswith(("data:", "#gallery-")) for u in page.urls)  # no file, no network
    assert "http://" not in text and "https://" not in text and "<link" not in text
    words = " ".join(page.text)
    assert f"{res.metrics['coco']['AP50']:.3f}" in words
    lo, hi = res.metrics["ci95"]["froc.cpm"]
    assert f"[{lo:.3f}, {hi:.3f}]" in words
    assert _gallery(page, "false_positive") == EXPECTED_FALSE_POSITIVES
    assert _gallery(page, "missed") == EXPECTED_MISSED
    assert len(page.imgs) == 4 + 6  # four plots + one thumbnail per case


def test_unreadable_image_is_named_not_broken(case, tmp_path):
    ds, files, res = case
    missing = [str(tmp_path / "gone" / os.path.basename(f)) for f in files]
    text = render_html_report(res, CLASS_NAMES, ds, missing, gallery_size=8)
    page = _parse(text)
    assert len(page.imgs) == 4  # plots only
    assert "image not available" in text and "negative_a.png" in text


def test_report_of_1000_images_stays_small(tmp_path):
    rng = np.random.default_rng(0)
    films = []
    for i in range(8):
        img = rng.integers(0, 255, (512, 512), dtype=np.uint8)  # noise: a worst case for JPEG
        films.append(str(tmp_path / f"film_{i}.png"))
        cv2.imwrite(films[-1], img)
    n, C = 1000, 8
    gi = np.arange(0, n, 3)
    gc = gi % C
    xy = rng.uniform(0, 400, (len(gi), 2))
    gb = np.c_[xy, xy + 60]
    di = rng.integers(0, n, 3000)
    dxy = rng.uniform(0, 400, (3000, 2))
    ds = M.DetectionSet(n, C, gi, gc, gb, di, di % C, np.c_[dxy, dxy + 50], rng.uniform(0, 1, 3000))
    names = [f"class{c}" for c in range(C)]
    res = compute_medical_metrics(ds, names, cm_threshold=0.3)
    text = render_html_report(res, names, ds, [films[i % 8] for i in range(n)], gallery_size=8)
    page = _parse(text)
    assert len(page.figures) == 2 * 8 * C
    assert len(text.encode()) < 20e6


def test_evaluator_writes_the_report(tmp_path):
    name = "cxr_test_html_report_eval"
    if name not in DatasetCatalog.list():
        dicts = write_tiny_images(str(tmp_path / "imgs"), n=5)
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="cxr")
    dicts = DatasetCatalog.get(name)
    out = str(tmp_path / "eval")
    ev = CXREvaluator(name, out, cm_threshold=0.5, gallery_size=2, distributed=False)
    preds = []
    for k, d in enumerate(dicts):  # one confident box in the top-left corner of every image
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
        inst.scores = torch.tensor([0.9])
        inst.pred_classes = torch.tensor([k % 2])
        preds.append({"instances": inst})
        ev.process([d], [preds[-1]])
    ev.evaluate()
    page = _parse(open(os.path.join(out, "report.html"), encoding="utf-8").read())
    ds, order, _ = dataset_to_detection_set(
        dicts, 2, [{"image_id": d["image_id"], **_rec(p)} for d, p in zip(dicts, preds)]
    )
    files = {d["image_id"]: os.path.basename(d["file_name"]) for d in dicts}
    cases = operating_point_cases(ds, [0.5, 0.5], 0.4, gallery_size=2)
    expected = [
        (n, kind, files[order[x.image_index]])
        for c, n in enumerate(["a", "b"])
        for kind, xs in (("false_positive", cases[c].false_positives), ("missed", cases[c].missed))
        for x in xs
    ]
    # a: 3 false positives (cut to 2), 2 missed; b: 2 and 2
    assert page.figures == expected and len(expected) == 8


def _rec(out) -> dict:
    inst = out["instances"]
    return {
        "boxes": inst.pred_boxes.tensor.numpy(),
        "scores": inst.scores.numpy(),
        "classes": inst.pred_classes.numpy(),
    }


def test_eval_tool_files_mode_writes_the_report(case, tmp_path):
    """tools/eval.py on COCO files: relative file names resolve against --image-root."""
    import json

    from ..tools.util import load_tool

    ds, files, _ = case
    xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]  # noqa
    gt = {
        "images": [{"id": i + 1, "file_name": os.path.basename(f)} for i, f in enumerate(files)],
        "categories": [{"id": c + 1, "name": n} for c, n in enumerate(CLASS_NAMES)],
        "annotations": [
            {"id": k + 1, "image_id": int(i) + 1, "category_id": int(c) + 1, "bbox": xywh(b)}
            for k, (i, c, b) in enumerate(zip(ds.gt_image, ds.gt_class, ds.gt_boxes))
        ],
    }
    dets = [
        {"image_id": int(i) + 1, "category_id": int(c) + 1, "bbox": xywh(b), "score": float(s)}
        for i, c, b, s in zip(ds.dt_image, ds.dt_class, ds.dt_boxes, ds.dt_scores)
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "det.json").write_text(json.dumps(dets))
    out = tmp_path / "out"
    args = ["--gt-json", str(tmp_path / "gt.json"), "--detections", str(tmp_path / "det.json")]
    args += ["--output", str(out), "--cm-threshold", str(THRESHOLD), "--no-plots"]
    load_tool("eval").main(args + ["--image-root", os.path.dirname(files[0])])
    page = _parse((out / "report.html").read_text(encoding="utf-8"))
    assert _gallery(page, "false_positive") == EXPECTED_FALSE_POSITIVES
    assert _gallery(page, "missed") == EXPECTED_MISSED
    assert len(page.imgs) == 4 + 6 and all(s.startswith("data:image/") for s in page.imgs)
