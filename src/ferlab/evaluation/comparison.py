"""Several models on one test set: a table of their metrics and McNemar tests between every pair."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferlab._io import write_csv, write_json, write_text
from ferlab._markdown import markdown_table
from ferlab.errors import FerlabError
from ferlab.evaluation.evaluate import Evaluation, evaluate_model, write_evaluation
from ferlab.evaluation.significance import mcnemar

__all__ = ["ComparisonResult", "TABLE_METRICS", "compare_models", "model_names"]

#: metrics.json key -> column title, in table order.
TABLE_METRICS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "top2_accuracy": "top-2 acc.",
    "macro_f1": "macro-F1",
    "macro_auroc": "macro AUROC",
    "log_loss": "log loss",
    "ece": "ECE",
}


@dataclass(frozen=True)
class ComparisonResult:
    """The per-model rows, the pairwise tests, and the markdown table that was written."""

    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    markdown: str


def model_names(models: Sequence[str | Path]) -> list[str]:
    """Short unique names for model paths: the folder (or file stem), numbered where two collide."""
    stems = [Path(m).stem if Path(m).suffix in (".safetensors", ".json") else Path(m).name for m in models]
    return [f"{stem}-{i}" if stems.count(stem) > 1 else stem for i, stem in enumerate(stems)]


def _paired_correctness(a: Evaluation, b: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of both models on the images both evaluated (the same samples, unless class sets differ)."""
    keys_b = {(s.source, s.box): i for i, s in enumerate(b.dataset.samples)}
    pairs = [(i, keys_b[(s.source, s.box)]) for i, s in enumerate(a.dataset.samples) if (s.source, s.box) in keys_b]
    if not pairs:
        return np.zeros(0, bool), np.zeros(0, bool)
    first, second = map(list, zip(*pairs))
    return a.correct[first], b.correct[second]


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _markdown(rows: list[dict[str, Any]], pairs: list[dict[str, Any]], data: str, split: str) -> str:
    columns = {**TABLE_METRICS, **({"detection_rate": "faces found"} if "detection_rate" in rows[0] else {})}
    lines = [f"Models on {data} ({split} split)\n"]
    lines += markdown_table(["model", "images", *columns.values()],
                            ([r["model"], r["samples"], *(_number(r[k]) for k in columns)] for r in rows))
    if pairs:
        lines += ["", "McNemar tests (paired, on the images both models saw)\n"]
        lines += markdown_table(["model A", "model B", "images", "only A right", "only B right", "p-value", "test"],
                                ([p["a"], p["b"], p["images"], p["only_a"], p["only_b"], f"{p['p_value']:.3g}",
                                  p["method"]] for p in pairs), align="llrrrrl")
    return "\n".join(lines) + "\n"


def compare_models(
    models: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    split: str = "auto",
    tta: str | None = None,
    merge: Mapping[str, Iterable[str]] | None = None,
    **photos: Any,
) -> ComparisonResult:
    """Evaluate each model into ``out/<name>/`` and write comparison.csv, comparison.md and comparison.json.

    Args:
        photos: `evaluate_model`'s ``detector``, ``detector_path`` and ``margin``, for whole photos
            (each model cuts the faces with its own framing).

    Raises:
        FerlabError: fewer than two models, or any model or data error.
    """
    if len(models) < 2:
        raise FerlabError("comparing models needs at least two")
    out = Path(out)
    names = model_names(models)
    evaluations = {}
    for name, model in zip(names, models):
        evaluations[name] = evaluate_model(model, data, split=split, tta=tta, merge=merge, **photos)
        write_evaluation(evaluations[name], out / name)
    photo_keys = [k for k in ("detection_rate", "no_face") if k in next(iter(evaluations.values())).metrics]
    rows = [{"model": name, "path": str(model), "tta": ev.metrics["tta"], "samples": ev.metrics["samples"],
             **{k: ev.metrics[k] for k in (*TABLE_METRICS, *photo_keys)}}
            for (name, ev), model in zip(evaluations.items(), models)]
    pairs = []
    for (name_a, a), (name_b, b) in itertools.combinations(evaluations.items(), 2):
        correct_a, correct_b = _paired_correctness(a, b)
        test = mcnemar(correct_a, correct_b)
        pairs.append({"a": name_a, "b": name_b, "images": int(len(correct_a)),
                      "accuracy_a": float(correct_a.mean()) if len(correct_a) else None,
                      "accuracy_b": float(correct_b.mean()) if len(correct_b) else None, **test.to_dict()})
    split_name = next(iter(evaluations.values())).metrics["split"]
    markdown = _markdown(rows, pairs, str(data), split_name)
    write_csv(out / "comparison.csv", rows, list(rows[0]))
    write_json(out / "comparison.json", {"data": str(data), "split": split_name, "models": rows, "mcnemar": pairs})
    write_text(out / "comparison.md", markdown)
    return ComparisonResult(rows, pairs, markdown)
