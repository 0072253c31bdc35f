"""The API's response shapes (pydantic), so the published OpenAPI schema says what each route returns."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["BatchPrediction", "Error", "Health", "ModelInfo", "Prediction", "error_responses"]


class Error(BaseModel):
    detail: str = Field(description="what was wrong, naming the file or field")


class Face(BaseModel):
    box: list[int] = Field(description="x, y, width, height in the upright image's pixels")
    score: float = Field(description="the detector's confidence; 1.0 where it gives none")
    landmarks: list[list[float]] | None = Field(description="five (x, y) points, or null")
    label: str
    probs: dict[str, float] = Field(description="class -> probability")


class ImageResult(BaseModel):
    name: str = Field(description="the uploaded file's name")
    width: int
    height: int
    faces: list[Face] = Field(description="left to right; empty where no face was found")


class Prediction(ImageResult):
    model: str


class BatchPrediction(BaseModel):
    model: str
    results: list[ImageResult] = Field(description="one per uploaded file, in upload order")


class ModelInfo(BaseModel):
    name: str
    classes: list[str]
    backend: str
    detector: str
    tta: str


class Health(BaseModel):
    status: str
    version: str
    models: list[str]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error codes a route answers, all with the `Error` body."""
    return {code: {"model": Error, "description": HTTPStatus(code).phrase} for code in codes}
