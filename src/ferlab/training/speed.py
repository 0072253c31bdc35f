"""Which precision and memory format a run trains in: bf16 and channels-last where they are faster.

On CPUs with AVX-512 bf16 (AMD Zen 4/5, Intel Sapphire Rapids) bf16 autocast with channels-last
trains the plain 3x3-conv zoo 1.9-4x faster than fp32 NCHW (``benchmarks/train_speed.py``: vgg_fer
at 40 px 2.55x, cnn3_bn 2.95x, with the same accuracy after 3 FER2013 epochs). Depthwise nets
(mini_xception) gain nothing from bf16 without channels-last and are not registered ``fast_bf16``.
"""

from __future__ import annotations

import logging

import torch

from ferlab.models.registry import model_entry

__all__ = ["bf16_supported", "resolve_speed"]

log = logging.getLogger(__name__)


def bf16_supported(accelerator: str = "auto") -> bool:
    """Whether the device training would run on computes bf16 natively (not emulated at fp32 speed or slower)."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if accelerator not in ("auto", "cpu"):
        return False
    capability = torch.backends.cpu.get_cpu_capability()  # "AVX512" on CPUs with AVX-512, "AVX2", "DEFAULT"...
    return capability.startswith("AVX512") and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_speed(model: str, precision: str, channels_last: bool | None, accelerator: str = "auto") -> tuple[str, bool]:
    """The precision and channels-last choice to train `model` with.

    ``auto`` becomes bf16-mixed for a ``fast_bf16`` family on bf16 hardware, else 32; an unset
    `channels_last` follows that choice. bf16-mixed asked for on hardware without bf16 falls
    back to 32 with one warning rather than running many times slower in emulation.
    """
    supported = bf16_supported(accelerator)
    if precision == "auto":
        precision = "bf16-mixed" if supported and model_entry(model).fast_bf16 else "32"
    elif precision == "bf16-mixed" and not supported:
        log.warning("precision bf16-mixed: this %s has no native bf16; training in 32-bit instead",
                    "machine" if accelerator == "auto" else accelerator)
        precision = "32"
    if channels_last is None:
        channels_last = precision == "bf16-mixed"
    return precision, channels_last
