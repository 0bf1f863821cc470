"""JSON schemas of the API's answers (served in ``/openapi.json``; docs/app.md lists them).

Boxes are XYXY_ABS pixels of the original film (``x0, y0`` top left, ``x1, y1`` bottom right);
scores are in (0, 1]; times in milliseconds.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = [
    "Detection",
    "Finding",
    "Health",
    "ImageSize",
    "InputSize",
    "ModelCard",
    "PredictResponse",
    "Timing",
]


class ImageSize(BaseModel):
    height: int = Field(description="film height in pixels")
    width: int = Field(description="film width in pixels")


class Detection(BaseModel):
    """One box, as a predictions.csv row holds it."""

    class_name: str
    score: float = Field(description="box score in (0, 1]")
    x0: float = Field(description="left, pixels of the original film")
    y0: float = Field(description="top, pixels of the original film")
    x1: float = Field(description="right, pixels of the original film")
    y1: float = Field(description="bottom, pixels of the original film")
    positive: bool = Field(description="score >= the class's operating point")


class Finding(BaseModel):
    """One class of the film, as findings.csv holds it."""

    class_name: str
    score: float = Field(description="image score: the class's highest box score, 0 if none")
    operating_point: float = Field(description="the class's score threshold")
    positive: bool = Field(description="score >= operating point and score > 0")


class Timing(BaseModel):
    read: float = Field(description="decoding the film (DICOM windowing included), ms")
    predict: float = Field(description="the detector and the decision rule, ms")
    total: float = Field(description="read + predict + display image, ms")


class PredictResponse(BaseModel):
    model_id: str = Field(description="sha256:<first 16 hex digits of the model file's SHA-256>")
    image: ImageSize
    detections: list[Detection] = Field(description="every box, by descending score")
    findings: list[Finding] = Field(description="one per class, in the model's class order")
    positive_findings: list[str] = Field(description="classes positive at their operating point")
    timing_ms: Timing
    display_png: str | None = Field(
        None, description="with ?display=true: the film as read (DICOM windowed), a PNG data URL"
    )


class InputSize(BaseModel):
    min_size_test: int = Field(description="short side the film is resized to, pixels")
    max_size_test: int = Field(description="long side limit, pixels")


class ModelCard(BaseModel):
    model_id: str
    name: str = Field(description="folder and file name of the model")
    sha256: str = Field(description="SHA-256 of the model file")
    backend: str = Field(description="onnxruntime or openvino")
    meta_architecture: str
    class_names: list[str]
    operating_points: dict[str, float] = Field(description="class name -> score threshold")
    cm_threshold: float = Field(description="threshold of classes without an operating point")
    input_size: InputSize


class Health(BaseModel):
    status: str
    model_id: str | None = None
