"""Which parameters train: freezing policies and the blocks they count in.

A model is seen as an ordered list of parameter blocks, input to output, the
last being the head. For timm backbones the blocks are timm's own coarse
groups (stem, each stage, ...), the ones its layer-wise learning-rate decay
uses; for other models they are the top-level layers that hold parameters.

Policies (`FREEZE_POLICIES`):
- ``none``: everything trains;
- ``backbone``: only the head trains;
- ``last:N``: the head and the last N backbone blocks train;
- ``first:N``: the first N backbone blocks and the head train, the rest is frozen;
- ``gradual:K``: starts as ``backbone`` and unfreezes one more block, from the
  top, every K epochs (applied by the training loop through `gradual_policy`).
"""

from __future__ import annotations

import re

from torch import nn

from ferlab.errors import FerlabError

__all__ = ["FREEZE_POLICIES", "apply_freeze", "gradual_policy", "parameter_blocks", "parse_freeze"]

FREEZE_POLICIES = ("none", "backbone", "last:N", "first:N", "gradual:K")
_POLICY = re.compile(r"^(none|backbone|(last|first|gradual):(\d+))$")


def parse_freeze(policy: str) -> tuple[str, int]:
    """``"last:2"`` -> ("last", 2); ``"none"`` -> ("none", 0).

    Raises:
        FerlabError: not one of `FREEZE_POLICIES`.
    """
    match = _POLICY.match(policy.strip())
    if not match or (match.group(2) == "gradual" and int(match.group(3)) < 1):
        raise FerlabError(f"unknown freezing policy {policy!r}; choose one of {', '.join(FREEZE_POLICIES)} (N >= 0, K >= 1)")
    return (match.group(2) or match.group(1)), int(match.group(3) or 0)


def parameter_blocks(model: nn.Module) -> list[list[nn.Parameter]]:
    """The model's parameters in blocks from input to output; the last block is the head."""
    backbone = getattr(model, "backbone", None)
    head = getattr(model, "head", None)
    if isinstance(backbone, nn.Module) and isinstance(head, nn.Module) and hasattr(backbone, "group_matcher"):
        from timm.models._manipulate import group_parameters

        params = dict(backbone.named_parameters())
        groups = group_parameters(backbone, backbone.group_matcher(coarse=True))
        return [[params[n] for n in names] for _, names in sorted(groups.items())] + [list(head.parameters())]
    blocks = [list(child.parameters()) for child in model.children()]
    return [b for b in blocks if b]


def apply_freeze(model: nn.Module, policy: str) -> tuple[int, int]:
    """Set ``requires_grad`` by `policy` (``gradual:K`` freezes as at its start).

    Returns:
        (trainable, total) parameter counts.

    Raises:
        FerlabError: an unknown policy, or N larger than the backbone's block count.
    """
    kind, n = parse_freeze(policy)
    blocks = parameter_blocks(model)
    backbone = blocks[:-1]
    if kind in ("last", "first") and n > len(backbone):
        raise FerlabError(f"freezing policy {policy!r}: the model has only {len(backbone)} backbone blocks")
    if kind == "none":
        trainable = set(range(len(blocks)))
    elif kind in ("backbone", "gradual"):
        trainable = {len(blocks) - 1}
    elif kind == "last":
        trainable = set(range(len(backbone) - n, len(blocks)))
    else:
        trainable = set(range(n)) | {len(blocks) - 1}
    for i, block in enumerate(blocks):
        for param in block:
            param.requires_grad_(i in trainable)
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def gradual_policy(policy: str, epoch: int, model: nn.Module) -> str | None:
    """The policy to apply at the start of `epoch` (0-based) under ``gradual:K``, or None for other policies."""
    kind, every = parse_freeze(policy)
    if kind != "gradual":
        return None
    return f"last:{min(epoch // every, len(parameter_blocks(model)) - 1)}"
