"""The paper's measurements: landscape probes along the gradient, gradient-based internal
covariate shift (Definition 2.1), and activation statistics.

The two expensive measurements are written against a ``loss_fn(params) -> scalar`` closure over
a dict of parameter tensors, so they apply equally to a network (through
``torch.func.functional_call``, which leaves the module's own parameters alone) and to a
closed-form test case. Nothing here calls ``.item()``: results stay on the device.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn as nn
from torch.func import functional_call, grad, grad_and_value, jvp, vmap

from bnopt.plan.tables import QUANTILES
from bnopt.training.normalisers import own_noise, reuse_noise
from bnopt.training.precision import ieee_fp32

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params], torch.Tensor]

QUANTILE_SAMPLE = 1 << 20  # torch.quantile works on at most this many (strided) elements


def total_norm(tensors) -> torch.Tensor:
    """l2 norm of several tensors taken together, as one device scalar."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


@contextlib.contextmanager
def frozen_statistics(model: nn.Module):
    """Inside this block BatchNorm (and LpNorm) use the batch's statistics but do not update
    their running statistics (nor ``num_batches_tracked``)."""
    bns = [m for m in model.modules()  # BatchNorm and LpNorm layers
           if getattr(m, "track_running_stats", False) and hasattr(m, "running_mean")]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


@contextlib.contextmanager
def probing(model: nn.Module):
    """Forward passes inside this block measure the *training* loss without side effects:
    running statistics frozen (:func:`frozen_statistics`), and noisy BN reuses the noise of the
    step's own forward pass."""
    with frozen_statistics(model), reuse_noise(model):
        yield


def loss_and_grad(loss_fn: LossFn, params: Params, wrt: list[str] | None = None):
    """Loss at ``params`` and its gradient with respect to ``wrt`` (default: all)."""
    wrt = list(params) if wrt is None else wrt
    p = {n: t.detach().requires_grad_(n in wrt) for n, t in params.items()}
    loss = loss_fn(p)
    grads = torch.autograd.grad(loss, [p[n] for n in wrt])
    return loss.detach(), dict(zip(wrt, grads))


def probe_along_gradient(loss_fn: LossFn, params: Params, grad: Params, step_sizes,
                         vectorize: bool = False, direction: Params | None = None
                         ) -> dict[str, torch.Tensor]:
    """Move from ``params`` along ``-grad`` by each step length eta and measure, at each point
    x' = x - eta * g:  the loss L(x'),  the gradient change ||grad L(x') - g||,  and
    ||grad L(x') - g|| / ||x' - x||  (whose maximum is the effective beta-smoothness).
    Returns tensors of shape (K,) for K step lengths. ``step_sizes`` may be a list or a tensor
    on the device (which spares a host-to-device copy, a sync on CUDA).

    ``direction`` d (default: ``grad``): move along -d instead, x' = x - eta * d, with the
    gradient change still measured against g and ||x' - x|| = eta * ||d||. With d = -(the
    optimizer's update) and eta = m, the points are x + m * update (:func:`measure_step`).

    ``vectorize=True`` evaluates all K points in one pass, ``torch.func.vmap`` over the step
    length (K times the activation memory; convolutions become grouped ones). Same values up to
    floating-point summation order; faster where a pass is launch-bound (the DLN), slower for
    the VGG on a CPU (see BENCHMARKS.md)."""
    d = grad if direction is None else direction
    d_norm = total_norm(d.values())
    eta = torch.as_tensor(step_sizes, dtype=d_norm.dtype, device=d_norm.device)
    if vectorize:
        def at(e):
            g2, loss = grad_and_value(loss_fn)({n: params[n] - e * d[n] for n in params})
            # a plain sum of squares: torch._foreach_norm has no vmap rule
            return loss.detach(), sum((g2[n] - grad[n]).square().sum() for n in params)
        loss, sq = vmap(at)(eta)
        return {"loss": loss, "grad_change": sq.sqrt(), "beta": sq.sqrt() / (eta * d_norm)}
    losses, changes = [], []
    for e in eta:  # 0-dim device tensors: no sync
        moved = {n: params[n] - e * d[n] for n in params}
        loss, g2 = loss_and_grad(loss_fn, moved)
        losses.append(loss)
        changes.append(total_norm([g2[n] - grad[n] for n in params]))
    change = torch.stack(changes)
    return {"loss": torch.stack(losses), "grad_change": change, "beta": change / (eta * d_norm)}


def gradient_ics(loss_fn: LossFn, before: Params, after: Params, layers: list[list[str]],
                 weights: list[str], grad_before: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """Definition 2.1 for every layer i: G = grad_{W_i} L at the parameters ``before`` the step
    (``grad_before``), G' = grad_{W_i} L after the parameters of layers 1..i-1 (``layers[j]``
    lists layer j's parameter names) take their values ``after`` the step, same batch.
    Returns (||G - G'||_2, cos(G, G')), each of shape (L,); cos is NaN where G or G' is zero.
    For layer 1 nothing before it changed, so G' = G exactly: l2 = 0 without a pass."""
    def moved_gradient(i: int, w: str) -> torch.Tensor:
        moved = set().union(*layers[:i])
        mixed = {n: (after[n] if n in moved else before[n]) for n in before}
        return loss_and_grad(loss_fn, mixed, wrt=[w])[1][w]

    return _ics_rows(weights, grad_before, moved_gradient)


def _ics_rows(weights: list[str], grad_before: Params, moved_gradient
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(||G - G'||, cos(G, G')) per layer, G' = ``moved_gradient(i, W_i)`` for layers 2..L and
    G' = G for layer 1 (nothing before it moved)."""
    l2, cos = [], []
    for i, w in enumerate(weights):
        g = grad_before[w]
        g2 = g if i == 0 else moved_gradient(i, w)
        l2.append(torch.linalg.vector_norm(g - g2))
        cos.append(_cosine(g, g2))
    return torch.stack(l2), torch.stack(cos)


def _cosine(g: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    # NaN, not 0, when either gradient is zero (e.g. a layer behind dead ReLUs)
    return (g * g2).sum() / (torch.linalg.vector_norm(g) * torch.linalg.vector_norm(g2))


def gradient_ics_layered(model: nn.Module, criterion, x, y, before: Params, after: Params,
                         grad_before: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gradient_ics` for a :class:`bnopt.training.models.Net`, with the same passes shared
    (:func:`layered_moved_gradients`). The same operations on the same values as
    :func:`gradient_ics` (equal to it bitwise on the CPU, tested). For the 14-layer VGG it
    saves the prefixes of 12 of the 13 ICS passes: a measured step 19% faster on a 2-core CPU
    (BENCHMARKS.md), about 13% fewer FLOPs by arithmetic; on a GPU not yet measured."""
    _, weights = layer_parameters(model)
    return _ics_rows(weights, grad_before,
                     layered_moved_gradients(model, criterion, x, y, before, after))


def layered_moved_gradients(model: nn.Module, criterion, x, y, before: Params, after: Params
                            ) -> Callable[[int, str], torch.Tensor]:
    """``moved_gradient(i, W_i)``: G'_i of Definition 2.1 (the gradient in W_i, 0-based layer
    ``i`` > 0, once layers before it take their values ``after`` the step), with the passes
    shared: the input of layer i with layers 1..i-1 at ``after`` is the same for every later
    layer's G', so one pass through the network at ``after`` gives all of them, and each G'_i
    runs only layers i..L forward and back. ``criterion(output, y)`` is the scalar loss."""
    _, weights = layer_parameters(model)
    inputs = [x]  # inputs[i]: the input of layer i (0-based) under ``after``
    with torch.no_grad():
        for i in range(len(weights) - 1):
            inputs.append(functional_call(model, after, (inputs[-1],), {"start": i, "stop": i + 1}))

    def moved_gradient(i: int, w: str) -> torch.Tensor:
        def rest(p):  # layers i..L at ``before`` (their own parameters are ``before``)
            return criterion(functional_call(model, p, (inputs[i],), {"start": i}), y)
        return loss_and_grad(rest, before, wrt=[w])[1][w]

    return moved_gradient


def layer_parameters(model: nn.Module) -> tuple[list[list[str]], list[str]]:
    """For a :class:`bnopt.training.models.Net`: the parameter names of each layer 1..L (weight, bias,
    normalisation scale/shift; g and v for weight normalisation) and the name of each layer's
    weight W_i (v for weight normalisation: see :meth:`bnopt.training.models.Net.weight_names`);
    for a module by import path, :meth:`bnopt.training.module_net.ModuleNet.layer_groups`."""
    if hasattr(model, "layer_groups"):  # a module by import path (bnopt.training.module_net)
        return model.layer_groups(), model.weight_names()
    names = [n for n, _ in model.named_parameters()]
    n_layers = len(model.layers)
    groups = [[n for n in names if n.startswith(f"layers.{i}.")] for i in range(n_layers)]
    return groups, model.weight_names()


def measure_step(model: nn.Module, criterion, x, y, before: Params, grad: Params,
                 step_sizes, vectorize: bool = False, ics: bool = True
                 ) -> tuple[dict[str, torch.Tensor] | None, torch.Tensor | None,
                            torch.Tensor | None]:
    """A measured step's probes and ICS, called after the optimizer step: ``before`` and
    ``grad`` are the step's parameters and gradient, the model holds the updated parameters.
    Returns (probe results (K,), ICS l2 (L,), ICS cos (L,)): the probes None where
    ``step_sizes`` is None, the ICS None without ``ics``; nothing in the model changes.
    Every pass runs in IEEE fp32 (or the model's dtype), whatever the training precision;
    ``vectorize``: see :func:`probe_along_gradient`."""
    def loss_fn(p):
        return criterion(functional_call(model, p, (x,)), y)

    probes = l2 = cos = None
    with probing(model), ieee_fp32():
        if step_sizes is not None:
            probes = probe_along_gradient(loss_fn, before, grad, step_sizes, vectorize)
        if ics:
            after = {n: p.detach() for n, p in model.named_parameters()}
            if hasattr(model, "layer_groups"):  # its forward cannot be cut: a full pass a layer
                l2, cos = gradient_ics(loss_fn, before, after, *layer_parameters(model), grad)
            else:
                l2, cos = gradient_ics_layered(model, criterion, x, y, before, after, grad)
    return probes, l2, cos


def probe_along_update(model: nn.Module, criterion, x, y, before: Params, grad: Params,
                       multipliers, vectorize: bool = False) -> dict[str, torch.Tensor]:
    """The probes of :func:`measure_step` along the update the optimizer made instead of the
    gradient (Adam's, or SGD's with momentum; plain SGD's is the gradient's own direction):
    called after the optimizer step, at x' = x + m * (x_after - x) for each multiplier m (m = 1
    is where the step went), the loss, ||grad L(x') - g|| and that over ||x' - x||, with
    ``distance`` ||x' - x||, each of shape (K,); nothing in the model changes."""
    def loss_fn(p):
        return criterion(functional_call(model, p, (x,)), y)

    with probing(model), ieee_fp32():
        back = {n: before[n] - p.detach() for n, p in model.named_parameters()}  # -update
        out = probe_along_gradient(loss_fn, before, grad, multipliers, vectorize, direction=back)
        out["distance"] = torch.as_tensor(multipliers, dtype=out["loss"].dtype,
                                          device=out["loss"].device) * total_norm(back.values())
    return out


def hvp(loss_fn: LossFn, params: Params, v: Params) -> tuple[Params, Params]:
    """(grad L(params), H v): the gradient and the Hessian-vector product at ``params``,
    forward-mode differentiation of the reverse-mode gradient (torch.func, no graph kept)."""
    return jvp(grad(loss_fn), (params,), (v,))


def lanczos_top(matvec: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                iters: int, tol: float) -> dict:
    """The largest *algebraic* eigenvalue of a symmetric operator by Lanczos with full
    reorthogonalisation, from the Krylov space of ``start``.

    Stops after ``iters`` products or once the top Ritz pair (theta, u) has a relative residual
    ||A u - theta u|| / |theta| <= ``tol`` (estimated as |beta_k s_k|, exact for full
    reorthogonalisation), or when the Krylov space is exhausted (invariant subspace). Returns
    ``lambda_max`` (theta, a device scalar), ``rayleigh`` (alpha_1 = start^T A start /
    start^T start), ``iterations`` (products used, int) and ``residual`` (relative, float).

    Unlike power iteration, which finds the eigenvalue of largest *magnitude* (a negative one
    where the Hessian's negative curvature dominates), the top Ritz value converges to the
    largest algebraic eigenvalue. Because the Krylov space contains ``start``, theta is never
    below the Rayleigh quotient alpha_1. The small tridiagonal eigenproblem is solved on the host
    in float64: one host sync per iteration (curvature steps are rare; docs/measurements.md,
    "Curvature"). Not scipy's ``eigsh``: it works on host arrays, so on a GPU it would copy the whole parameter vector to
    the host and back at every product; here the Krylov vectors stay on the device, in one
    preallocated (iters, n) block: memory for ``iters`` copies of the parameters."""
    q = start / torch.linalg.vector_norm(start)
    basis = q.new_empty((iters, q.numel()))  # the Krylov vectors, filled row by row
    basis[0] = q
    alphas, betas = [], []  # host floats
    q_prev, beta_prev = torch.zeros_like(q), torch.zeros((), dtype=q.dtype, device=q.device)
    rayleigh, theta_h, residual, k = None, float("nan"), float("nan"), 0
    for k in range(1, iters + 1):
        w = matvec(q)
        alpha = torch.dot(w, q)
        if rayleigh is None:
            rayleigh = alpha
        w = w - alpha * q - beta_prev * q_prev
        Q = basis[:k]  # full reorthogonalisation, twice ("twice is enough")
        w = w - Q.T @ (Q @ w)
        w = w - Q.T @ (Q @ w)
        beta = torch.linalg.vector_norm(w)
        a_k, b_k = torch.stack([alpha, beta]).double().cpu().tolist()  # the host sync
        if not (math.isfinite(a_k) and math.isfinite(b_k)):  # a diverged run: nothing to measure
            theta_h, residual = float("nan"), float("nan")
            break
        alphas.append(a_k)
        betas.append(b_k)
        a, b = torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas[:-1], dtype=torch.float64)
        evals, evecs = torch.linalg.eigh(torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1))
        theta_h, s_last = float(evals[-1]), float(evecs[-1, -1])
        residual = abs(b_k * s_last) / max(abs(theta_h), 1e-300)
        # an invariant subspace (beta ~ 0, relative to the operator's scale) ends the space
        if residual <= tol or b_k <= 1e-12 * max(max(map(abs, alphas)), 1e-300) or k == iters:
            break
        q_prev, beta_prev, q = q, beta, w / beta
        basis[k] = q
    theta = torch.tensor(theta_h, dtype=q.dtype, device=q.device)
    return {"lambda_max": theta, "rayleigh": rayleigh, "iterations": k, "residual": residual}


def curvature(loss_fn: LossFn, params: Params, grad: Params, iters: int = 20,
              tol: float = 1e-3) -> dict:
    """Curvature of ``loss_fn`` at ``params``: the top Hessian eigenvalue ``lambda_max`` (Lanczos
    on Hessian-vector products, started from ``grad``) and ``batch_sharpness`` = g^T H g / g^T g
    along ``grad`` (Lanczos's first coefficient, so it costs no extra product), plus
    ``iterations`` and ``residual`` (see :func:`lanczos_top`). Starting from the gradient needs
    no random numbers and guarantees lambda_max >= batch_sharpness; a top eigenvector exactly
    orthogonal to every Krylov vector of g would go unseen (``residual`` cannot tell)."""
    names = list(params)
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]

    def matvec(v: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, (t.view(s) for t, s in zip(v.split(sizes), shapes))))
        _, hv = hvp(loss_fn, params, parts)
        return torch.cat([hv[n].reshape(-1) for n in names])

    g = torch.cat([grad[n].reshape(-1) for n in names])
    out = lanczos_top(matvec, g, iters, tol)
    return {"lambda_max": out["lambda_max"], "batch_sharpness": out["rayleigh"],
            "iterations": out["iterations"], "residual": out["residual"]}


def measure_curvature(model: nn.Module, criterion, x, y, before: Params, grad: Params,
                      iters: int, tol: float) -> dict:
    """:func:`curvature` of the step's training loss (training-mode BN on the step's batch,
    noisy BN with the step's own noise) at the step's parameters ``before``, along its gradient
    ``grad``, in IEEE arithmetic, with no side effects (:func:`probing`)."""
    def loss_fn(p):
        return criterion(functional_call(model, p, (x,)), y)

    with probing(model), ieee_fp32():
        return curvature(loss_fn, before, grad, iters, tol)


def activation_summary(z: torch.Tensor, quantiles: torch.Tensor | None = None) -> torch.Tensor:
    """[mean, std, *QUANTILES] of all elements of a pre-activation tensor (one device tensor).
    ``quantiles``: QUANTILES as a float32 tensor on z's device, to spare a copy (a CUDA sync)."""
    flat = z.detach().flatten().float()
    sample = flat[:: max(1, -(-flat.numel() // QUANTILE_SAMPLE))]
    if quantiles is None:
        quantiles = torch.tensor(QUANTILES, dtype=sample.dtype, device=z.device)
    q = torch.quantile(sample, quantiles)
    return torch.cat([torch.stack([flat.mean(), flat.std()]), q])


def unit_indices(units: int, k: int) -> list[int]:
    """``k`` of a layer's ``units`` (channels), evenly spaced from the first to the last
    (fewer where the layer has fewer): which single units a run follows (units.parquet)."""
    if k <= 1:
        return [0][:k]
    return sorted({round(i * (units - 1) / (k - 1)) for i in range(k)})


def unit_percentiles(z: torch.Tensor, units: torch.Tensor, quantiles: torch.Tensor
                     ) -> torch.Tensor:
    """Quantiles over the batch (and positions, for conv maps) of each of ``units`` (channel
    indices) of the pre-activation ``z`` (N, C, ...): shape (len(units), len(quantiles)), on
    z's device. ``units``, ``quantiles``: tensors on that device (a copy in the step loop
    would sync)."""
    v = z.detach().float().index_select(1, units)
    v = v.transpose(0, 1).reshape(len(units), -1)
    v = v[:, :: max(1, -(-v.numel() // QUANTILE_SAMPLE))]
    return torch.quantile(v, quantiles, dim=1).T


def channel_moments(z: torch.Tensor) -> torch.Tensor:
    """Per-unit mean and variance over the batch (and positions, for conv maps): shape (2, C)."""
    dims = [d for d in range(z.dim()) if d != 1]
    var, mean = torch.var_mean(z.detach().float(), dim=dims)
    return torch.stack([mean, var])


@torch.no_grad()
def probe_moments(model: nn.Module, x: torch.Tensor, generator: torch.Generator,
                  halves: bool = False) -> list:
    """Every layer's per-unit mean and variance on the fixed probe batch ``x``, as training
    sees them (training mode: batch statistics; noisy BN draws fresh noise from ``generator``,
    the probe's own stream), and without side effects: running statistics, the training noise
    stream and the step's own noise are left as they were. Per layer, (1, 2, C); with
    ``halves``, (3, 2, C): the whole batch, then its two halves, each passed through the network
    as a batch of its own (as two different training batches would be)."""
    h = x.shape[0] // 2
    passes = [x, x[:h], x[h:2 * h]] if halves else [x]
    moments = []
    with frozen_statistics(model), own_noise(model, generator):
        for batch in passes:
            preacts: list = []
            model(batch, preacts=preacts)
            moments.append([channel_moments(z) for z in preacts])
    return [torch.stack(layer) for layer in zip(*moments)]


def probe_shift(before: list, after: list) -> torch.Tensor:
    """(L, 4) per layer, from :func:`probe_moments` before (with its halves) and after an
    update: the median over units of |change of the unit's mean| / its std and |change of its
    variance| / its variance (each unit on its own scale, before the update; the median, as a
    unit with almost no variance, a dead one, would otherwise decide a mean), and the sampling
    floor: the same two between the two halves of the batch before the update, over sqrt(2).
    That is what comparing two different training batches of the full size measures with no
    update at all (the expected |difference| of two sample moments falls as 1 / sqrt(batch)),
    the floor of the consecutive-batch shift (``mean_shift``, ``var_shift``). Units with no
    variance are left out."""
    rows = []
    for b, a in zip(before, after):
        mean, var = b[0, 0], b[0, 1]
        nan = torch.full_like(var, float("nan"))
        sd, v = torch.where(var > 0, var.sqrt(), nan), torch.where(var > 0, var, nan)
        rows.append(torch.stack([((a[0, 0] - mean).abs() / sd).nanmedian(),
                                 ((a[0, 1] - var).abs() / v).nanmedian(),
                                 ((b[1, 0] - b[2, 0]).abs() / sd).nanmedian() / math.sqrt(2),
                                 ((b[1, 1] - b[2, 1]).abs() / v).nanmedian() / math.sqrt(2)]))
    return torch.stack(rows)


def moment_shift(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Mean over units of |change of mean| and |change of variance| between two steps: (2,)."""
    return (after - before).abs().mean(dim=1)


def histogram(z: torch.Tensor, bins: int = 64) -> torch.Tensor:
    """(bins, 3) rows of [left edge, right edge, count] over [min, max], computed on the device."""
    flat = z.detach().flatten().float()
    lo, hi = flat.min(), flat.max()
    width = torch.clamp(hi - lo, min=1e-12) / bins
    idx = ((flat - lo) / width).long().clamp_(0, bins - 1)
    counts = torch.zeros(bins, dtype=flat.dtype, device=z.device).scatter_add_(
        0, idx, torch.ones_like(flat))
    left = lo + width * torch.arange(bins, dtype=flat.dtype, device=z.device)
    return torch.stack([left, left + width, counts], dim=1)
