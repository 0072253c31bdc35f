"""What `ferlab models` shows: each model's size and input, and one model's layers."""

from __future__ import annotations

import torch
from torch import nn

from ferlab.errors import FerlabError
from ferlab.models.catalog import ModelSummary
from ferlab.models.registry import count_parameters, create_model, list_models, model_entry

__all__ = ["ModelSummary", "layer_table", "summarize_models"]


def summarize_models(pattern: str = "*", num_classes: int = 7) -> list[ModelSummary]:
    """One summary per registered model matching `pattern` (builds each once, on the CPU)."""
    summaries = []
    for name in list_models(pattern):
        entry = model_entry(name)
        try:
            with torch.device("meta"):  # shapes only: no memory, no initialisation (vgg16 is 134 M parameters)
                params: int | None = count_parameters(create_model(name, num_classes=num_classes))
        except FerlabError:
            params = None
        prep = entry.preprocessing
        summaries.append(ModelSummary(name, params, prep.input_size, prep.channels, entry.description))
    return summaries


def layer_table(model: nn.Module) -> str:
    """Every leaf layer with its parameter count, then the totals."""
    rows = [
        (name, type(module).__name__, sum(p.numel() for p in module.parameters(recurse=False)))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    width = max((len(name) for name, _, _ in rows), default=5)
    lines = [f"{'layer':{width}s}  {'type':20s} {'params':>12s}"]
    lines += [f"{name:{width}s}  {kind:20s} {params:12,d}" for name, kind, params in rows]
    total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
    lines.append(f"{'total':{width}s}  {'':20s} {total:12,d} ({trainable:,d} trainable)")
    return "\n".join(lines)
