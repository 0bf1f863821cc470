"""``report.html``: one self-contained page per evaluation, readable offline.

Everything is inside the file: plots (PNG) and gallery thumbnails (JPEG) are base64 ``data:``
URIs, styles and a tiny load check are inline, and a Content-Security-Policy forbids every
network request. Sections: headline metrics with 95% CIs, data-set summary, per-class table,
FROC / PR / ROC / confusion plots, and per class a gallery of the highest-scoring false
positives and of the missed lesions at the operating point (:mod:`cxr.evaluation.gallery`).

Size: at most ``2 * gallery_size`` thumbnails per class (downscaled JPEGs, about 10 KB each)
plus four plots, whatever the number of images evaluated.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import tempfile
from typing import Callable, Sequence

import numpy as np

from ..fileio import write_text_atomic
from .gallery import GT_COLOR, PRED_COLOR, ClassCases, case_thumbnail, operating_point_cases
from .medical import MedicalResult
from .records import DetectionSet
from .plots import PLOTS, write_plots
from .tables import per_class_rows

__all__ = ["write_html_report", "render_html_report"]

logger = logging.getLogger(__name__)

HEADLINE = (
    ("AP50", "COCO AP50", ("coco", "AP50"), None),
    ("AP", "COCO AP", ("coco", "AP"), None),
    ("voc_map40", "mAP@0.4 (VOC)", ("voc_map40",), "voc_map40"),
    ("froc_cpm", "FROC CPM", ("froc", "cpm"), "froc.cpm"),
    (
        "sensitivity_macro",
        "Sensitivity (macro)",
        ("image_level", "macro", "sensitivity"),
        "image_level.macro.sensitivity",
    ),
    (
        "specificity_macro",
        "Specificity (macro)",
        ("image_level", "macro", "specificity"),
        "image_level.macro.specificity",
    ),
    ("auroc_macro", "AUROC (macro)", ("image_level", "macro", "auroc"), "image_level.macro.auroc"),
    (
        "auroc_any",
        "AUROC (any finding)",
        ("image_level", "any_finding", "auroc"),
        "image_level.any_finding.auroc",
    ),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1400px}
h1{font-size:1.5em;margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.sub{color:#666;margin-top:4px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.card .v{font-size:1.6em;font-weight:600}.card .ci,.card .k{color:#666;font-size:.85em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.plots img{max-width:48%;margin:4px;border:1px solid #eee}
.grid{display:flex;flex-wrap:wrap;gap:8px}
figure.case{margin:0;border:1px solid #ddd;padding:4px;width:min-content}
figure.case figcaption{font-size:.78em;word-break:break-all}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
.none{color:#777;font-style:italic}
"""

# Sets data-images-loaded / data-images-total on <body> once the page has loaded, so that a
# headless browser (--dump-dom) can report broken images.
_LOAD_CHECK = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  }
  document.body.setAttribute('data-images-loaded', String(ok));
  document.body.setAttribute('data-images-total', String(imgs.length));
});
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _ci(metrics: dict, key: str | None) -> str:
    if key is None or key not in metrics.get("ci95", {}):
        return ""
    lo, hi = metrics["ci95"][key]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{lo:.3f}, {hi:.3f}]"


def _get(d: dict, path: Sequence[str]):
    for k in path:
        d = d[k]
    return d


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _headline(metrics: dict) -> str:
    cards = []
    for key, label, path, ci_key in HEADLINE:
        ci = _ci(metrics, ci_key)
        ci_text = f"95% CI {ci}" if ci else ("no CI (not bootstrapped)" if ci_key else "")
        cards.append(
            f'<div class="card" data-metric="{key}"><div class="k">{html.escape(label)}</div>'
            f'<div class="v">{_num(_get(metrics, path))}</div>'
            f'<div class="ci">{html.escape(ci_text)}</div></div>'
        )
    return (
        '<section id="headline"><h2>Headline</h2><div class="cards">'
        + "".join(cards)
        + ("</div></section>")
    )


def _summary(res: MedicalResult, class_names: Sequence[str]) -> str:
    m = res.metrics
    n_img = m["num_images"]
    has_box = res.labels.any(1) if res.labels.size else np.zeros(n_img, bool)
    pos = res.labels.sum(0) if res.labels.size else np.zeros(len(class_names), int)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{m['num_gt_boxes_per_class'][n]}</td>"
        f"<td>{int(pos[c])}</td></tr>"
        for c, n in enumerate(class_names)
    )
    return (
        '<section id="dataset"><h2>Data set</h2>'
        f'<p><span data-field="images">{n_img}</span> images, '
        f'<span data-field="boxes">{m["num_gt_boxes"]}</span> ground-truth boxes, '
        f'<span data-field="negatives">{int(n_img - has_box.sum())}</span> negatives '
        f"(images without a box), {m['num_detections']} detections.</p>"
        "<table><tr><th>class</th><th>boxes</th><th>positive images</th></tr>"
        f"{rows}</table></section>"
    )


def _with_ci(row: dict, key: str) -> str:
    v = _num(row[key])
    lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        v += f" <small>[{lo:.3f}, {hi:.3f}]</small>"
    return v


def _per_class_table(res: MedicalResult, class_names: Sequence[str]) -> str:
    ci = res.metrics.get("ci95", {})
    head = (
        "<tr><th>class</th><th>boxes</th><th>AP50</th><th>mAP@0.4</th><th>FROC CPM</th>"
        "<th>operating point</th><th>TP</th><th>FP</th><th>TN</th><th>FN</th>"
        "<th>sensitivity</th><th>specificity</th><th>AUROC</th></tr>"
    )
    body = []
    for r in per_class_rows(res, class_names):
        key = "voc_map40" if r["class"] == "any_finding" else f"voc_ap40.{r['class']}"
        voc = _num(r["voc_ap40"])
        if key in ci and all(v is not None and math.isfinite(v) for v in ci[key]):
            voc += f" <small>[{ci[key][0]:.3f}, {ci[key][1]:.3f}]</small>"
        cells = [
            html.escape(r["class"]),
            str(r["gt_boxes"]),
            _num(r["coco_AP50"]),
            voc,
            _num(r["froc_cpm"]),
            _num(r["threshold"]),
            *(f"{r[k]:g}" for k in ("tp", "fp", "tn", "fn")),
            _with_ci(r, "sensitivity"),
            _with_ci(r, "specificity"),
            _with_ci(r, "auroc"),
        ]
        body.append(
            f'<tr data-class="{html.escape(r["class"])}">'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    return (
        '<section id="per-class"><h2>Per class</h2><table>' + head + "".join(body) + "</table>"
        '<p class="sub">Image level at the operating point (a score equal to the threshold is '
        "positive); 95% bootstrap CIs in brackets.</p></section>"
    )


def _plots(plot_pngs: dict[str, bytes]) -> str:
    imgs = "".join(
        f'<img src="{_data_uri(data, "image/png")}" alt="{html.escape(name)}" '
        f'data-plot="{html.escape(name)}">'
        for name, data in plot_pngs.items()
    )
    return f'<section id="plots" class="plots"><h2>Plots</h2>{imgs}</section>'


def _case_figure(case, file_name: str, thumb: bytes | None, error: str, threshold: float) -> str:
    base = os.path.basename(file_name) or file_name
    score = (
        f"score {case.score:.2f}"
        if case.kind == "false_positive"
        else (
            f"best detection {case.score:.2f} &lt; {threshold:.2f}"
            if case.score
            else "no detection"
        )
    )
    box = ", ".join(f"{v:.0f}" for v in case.box)
    img = (
        f'<img src="{_data_uri(thumb, "image/jpeg")}" alt="{html.escape(base)}">'
        if thumb is not None
        else f'<div class="none">image not available: {html.escape(error)}</div>'
    )
    return (
        f'<figure class="case" data-kind="{case.kind}" data-file="{html.escape(base)}">{img}'
        f'<figcaption title="{html.escape(file_name)}"><b>{html.escape(base)}</b><br>{score}'
        f"<br>box [{box}]</figcaption></figure>"
    )


def _gallery(
    cases: list[ClassCases],
    res: MedicalResult,
    ds: DetectionSet,
    class_names: Sequence[str],
    file_names: Sequence[str],
    read_image: Callable[[str], np.ndarray],
    thumb_size: int,
    missing_hint: str = "",
) -> str:
    images: dict[int, tuple[np.ndarray | None, str]] = {}

    def load(i: int):
        if i not in images:
            try:
                images[i] = (read_image(file_names[i]), "")
            except (OSError, ValueError) as e:
                logger.debug("Gallery: %s", e)
                images[i] = (None, str(e))
        return images[i]

    parts = [
        '<section id="gallery"><h2>Galleries at the operating point</h2><p class="legend">'
        f'<span style="background:rgb{_rgb(GT_COLOR)}"></span>ground truth'
        f'<span style="background:rgb{_rgb(PRED_COLOR)}"></span>prediction (score)</p>'
    ]
    for c, name in enumerate(class_names):
        thr = float(res.thresholds[c])
        parts.append(
            f'<div class="class-gallery" id="{_anchor(name)}" data-class="{html.escape(name)}">'
            f"<h3>{html.escape(name)} <small>(threshold {thr:.3f})</small></h3>"
        )
        cc = cases[c]
        for kind, title, items, total in (
            (
                "false_positive",
                "Highest-scoring false positives",
                cc.false_positives,
                cc.num_false_positives,
            ),
            ("missed", "Missed lesions", cc.missed, cc.num_missed),
        ):
            figs = []
            for case in items:
                img, err = load(case.image_index)
                thumb = (
                    case_thumbnail(img, case, ds, class_names, thr, size=thumb_size)
                    if img is not None
                    else None
                )
                figs.append(_case_figure(case, file_names[case.image_index], thumb, err, thr))
            body = "".join(figs) if figs else '<p class="none">none</p>'
            parts.append(
                f"<h4>{title} <small>(showing {len(items)} of {total})</small></h4>"
                f'<div class="grid" data-gallery="{kind}">{body}</div>'
            )
        parts.append("</div>")
    parts.append("</section>")
    failed = [err for _, err in images.values() if err]
    if failed:  # one line, not one per image
        logger.warning("Gallery: %d of %d images could not be read (first: %s)%s", len(failed),
                       len(images), failed[0], missing_hint)  # fmt: skip
    return "".join(parts)


def _anchor(class_name: str) -> str:
    """The page-internal id of a class's gallery (``gallery-<name>``, letters and digits)."""
    return "gallery-" + "".join(ch if ch.isalnum() else "-" for ch in class_name)


def _nav(class_names: Sequence[str]) -> str:
    links = " · ".join(f'<a href="#{_anchor(n)}">{html.escape(n)}</a>' for n in class_names)
    return f'<p class="sub">Galleries: {links}</p>'


def _rgb(bgr) -> str:
    return f"({bgr[2]},{bgr[1]},{bgr[0]})"


def _plot_pngs(res: MedicalResult, class_names: Sequence[str], plot_dir: str | None) -> dict:
    """The four plots as PNG bytes: from ``plot_dir`` when they are there, else rendered."""

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    if plot_dir and all(os.path.isfile(os.path.join(plot_dir, p)) for p in PLOTS):
        return {p: read(os.path.join(plot_dir, p)) for p in PLOTS}
    with tempfile.TemporaryDirectory() as tmp:
        return {os.path.basename(p): read(p) for p in write_plots(res, class_names, tmp)}


def render_html_report(
    res: MedicalResult,
    class_names: Sequence[str],
    ds: DetectionSet,
    file_names: Sequence[str],
    *,
    title: str = "Evaluation report",
    subtitle: str = "",
    gallery_size: int = 8,
    thumb_size: int = 224,
    plot_dir: str | None = None,
    read_image: Callable[[str], np.ndarray] | None = None,
    missing_hint: str = "",
) -> str:
    """The report as one HTML string (see the module docstring for its sections).

    Args:
        res: :func:`~cxr.evaluation.medical.compute_medical_metrics` output for ``ds``; its
            ``thresholds`` are the operating points of the galleries.
        class_names: C names by class index.
        ds: the evaluated boxes and detections (XYXY_ABS pixels of the original images).
        file_names: (N,) image file per image index of ``ds`` (read for the thumbnails).
        title, subtitle: page heading and the line under it (plain text).
        gallery_size: at most this many cases per class and kind (false positives, missed).
        thumb_size: thumbnail side in pixels.
        plot_dir: a folder that already holds the PNG plots of this evaluation (else rendered).
        read_image: path -> (H, W) or (H, W, 3) uint8 image; default
            :func:`cxr.data.wds.read_film` (an image file or a ``<shard>.tar#<key>`` member of a
            shard set). An unreadable image gives a text placeholder.
        missing_hint: appended to the one warning line that counts unreadable images (e.g.
            the flag that says where the images are).

    Returns:
        the HTML text.
    """
    if len(file_names) != ds.num_images:
        raise ValueError(f"{len(file_names)} file names for a set of {ds.num_images} images")
    if read_image is None:
        from ..data.wds import read_film as read_image
    iou = float(res.metrics.get("settings", {}).get("froc_iou_threshold", 0.4))
    cases = operating_point_cases(ds, res.thresholds, iou, gallery_size)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">{html.escape(subtitle)}</p>' if subtitle else "",
        _nav(class_names),
        _headline(res.metrics),
        _summary(res, class_names),
        _per_class_table(res, class_names),
        _plots(_plot_pngs(res, class_names, plot_dir)),
        _gallery(cases, res, ds, class_names, file_names, read_image, thumb_size, missing_hint),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script>{_LOAD_CHECK}</script></head>\n<body>" + "\n".join(body) + "</body></html>\n"
    )


def write_html_report(path: str, *args, **kwargs) -> str:
    """Write :func:`render_html_report` ``(*args, **kwargs)`` to ``path`` atomically.

    Returns:
        ``path``.
    """
    text = render_html_report(*args, **kwargs)
    write_text_atomic(path, text)
    logger.info("Report: %s (%.1f MB)", path, len(text.encode()) / 1e6)
    return path
