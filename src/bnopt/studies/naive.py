"""The naive way to measure a step, as the earlier attempts did it: deep-copy the model for every
probe point and every layer, move the copy's parameters in place, and run it.

It is the reference our fast path (:func:`bnopt.training.measure.measure_step`) is tested against, and the
baseline of ``benchmarks/bench_step.py``. Do not use it in training.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from bnopt.training.measure import layer_parameters, total_norm
from bnopt.training.normalisers import NoisyBatchNorm, noisy_modules


def copy_model(model: nn.Module) -> nn.Module:
    """Deep copy (generators cannot be copied; the copy reuses the step's noise instead)."""
    gens = [m.generator for m in noisy_modules(model)]
    for m in noisy_modules(model):
        m.generator = None
    try:
        clone = copy.deepcopy(model)
    finally:
        for m, g in zip(noisy_modules(model), gens):
            m.generator = g
    for m in clone.modules():
        if isinstance(m, NoisyBatchNorm):
            m.reuse = True
    return clone


def _loss_and_grads(model, criterion, x, y):
    model.zero_grad(set_to_none=True)
    loss = criterion(model(x), y)
    loss.backward()
    return loss.detach(), {n: p.grad.detach() for n, p in model.named_parameters()}


def naive_measure_step(model_before: nn.Module, model_after: nn.Module, criterion, x, y,
                       grad: dict, step_sizes):
    """Probes and ICS from a copy of the model before the step (``model_before``) and the model
    after it. Returns the same (probes, l2, cos) as :func:`bnopt.training.measure.measure_step`."""
    losses, changes = [], []
    g_norm = total_norm(grad.values())
    for eta in step_sizes:
        m = copy_model(model_before)
        with torch.no_grad():
            for n, p in m.named_parameters():
                p -= eta * grad[n]
        loss, g2 = _loss_and_grads(m, criterion, x, y)
        losses.append(loss)
        changes.append(total_norm([g2[n] - grad[n] for n in grad]))
    eta = torch.as_tensor(step_sizes, dtype=g_norm.dtype, device=g_norm.device)
    change = torch.stack(changes)
    probes = {"loss": torch.stack(losses), "grad_change": change, "beta": change / (eta * g_norm)}

    groups, weights = layer_parameters(model_before)
    after = dict(model_after.named_parameters())
    l2, cos = [], []
    for i, w in enumerate(weights):
        m = copy_model(model_before)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if any(n in grp for grp in groups[:i]):
                    p.copy_(after[n])
        _, g2 = _loss_and_grads(m, criterion, x, y)
        g, g2 = grad[w], g2[w]
        l2.append(torch.linalg.vector_norm(g - g2))
        cos.append((g * g2).sum() / (g.norm() * g2.norm()))
    return probes, torch.stack(l2), torch.stack(cos)
