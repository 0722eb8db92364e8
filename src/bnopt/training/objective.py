"""What training minimises and how it scores: the loss (cross-entropy, or the squared loss of
the deep linear network's regression) and the batch accuracy, as device scalars."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def criterion(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy for class labels; for regression targets the squared loss
    ||f(x) - y||^2 summed over outputs, averaged (or summed) over samples."""
    if y.dtype == torch.long:
        return F.cross_entropy(out, y, reduction=reduction)
    per_sample = (out - y).square().sum(1)
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean accuracy for class labels; NaN for regression targets."""
    if y.dtype == torch.long:
        return (out.argmax(1) == y).float().mean()
    return torch.full((), float("nan"), device=out.device)
