"""`evaluate(...)`: a model on a dataset, written out as metrics.json, a confusion matrix and per-image predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferlab._io import write_csv, write_json
from ferlab.data import ImageDataset, SampleTable, open_dataset
from ferlab.errors import FerlabError
from ferlab.evaluation.metrics import classification_metrics
from ferlab.evaluation.plots import plot_confusion_matrix
from ferlab.models import LoadedModel, load_model

__all__ = ["choose_split", "evaluate"]


def choose_split(table: SampleTable, split: str) -> SampleTable:
    """The samples to evaluate: ``auto`` takes test, else val, else an unsplit tree whole; ``all`` takes everything.

    Raises:
        FerlabError: the split is absent.
    """
    present = table.splits()
    if split == "all":
        return table
    if split == "auto":
        for name in ("test", "val", ""):
            if name in present:
                return table.split(name)
        raise FerlabError(f"{table.origin} has only a training split; pass --split train to evaluate on it")
    if split not in present:
        raise FerlabError(f"{table.origin} has no {split!r} split (found {[s or 'unsplit' for s in present]})")
    return table.split(split)


def evaluate(
    model: str | Path | LoadedModel, data: str | Path, out: str | Path, split: str = "auto"
) -> dict[str, Any]:
    """Evaluate `model` on `data` and write ``metrics.json``, ``confusion_matrix.png`` and ``predictions.csv`` to `out`.

    Returns:
        The metrics, as written to ``metrics.json``.

    Raises:
        FerlabError: bad paths, or data with classes the model does not predict.
    """
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    table = choose_split(open_dataset(data), split)
    extra = sorted(set(table.classes()) - set(loaded.classes))
    if extra:
        raise FerlabError(
            f"{data} has classes {extra} that the model does not predict (its classes: {list(loaded.classes)})"
        )
    dataset = ImageDataset(table, loaded.classes, loaded.meta.preprocessing)
    probs = loaded.predict_proba(dataset.pixels)
    targets = dataset.targets.numpy()
    metrics = {
        "model": str(model) if not isinstance(model, LoadedModel) else loaded.meta.architecture,
        "data": str(data),
        "split": "+".join(name or "unsplit" for name in table.splits()),
        "skipped": dataset.skipped,
        **classification_metrics(targets, probs, loaded.classes),
    }
    out = Path(out)
    write_json(out / "metrics.json", metrics)
    plot_confusion_matrix(metrics["confusion_matrix"], loaded.classes, out / "confusion_matrix.png")
    rows = [
        {"source": s.source, "true": s.label, "predicted": loaded.classes[p.argmax()],
         **{c: round(float(v), 6) for c, v in zip(loaded.classes, p)}}
        for s, p in zip(dataset.samples, probs)
    ]
    write_csv(out / "predictions.csv", rows, ["source", "true", "predicted", *loaded.classes])
    return metrics
