"""Seeds as one network: the N runs of one (dataset, model, variant, lr) trained as a single
*packed* network, so that every kernel does N runs' work (Packed-Ensembles, Laurent et al. 2023).
Not part of the workflow: ``benchmarks/bench_pack.py`` measures whether it pays (BENCHMARKS.md).

Layout. Run r's channels (or units) are block r of every layer: a conv layer of C_in -> C_out
becomes one convolution of N C_in -> N C_out channels in N groups; a linear layer becomes a
batched matrix product over the N blocks (:class:`GroupedLinear`); the batch is (B, N C, H, W),
sample b of every run in row b. Every normaliser is per run as it stands, since its statistics
never cross a channel block: BatchNorm and the l_p norms are per channel, LayerNorm becomes
GroupNorm with one group per run, GroupNorm(g) becomes GroupNorm(N g), weight normalisation
is per output unit, and noisy BN draws each run's noise from that run's own generator
(:class:`PackedNoisyBatchNorm`). The loss is the sum of the runs' own mean losses, so the
gradient of a run's parameters is that run's gradient, and SGD (element-wise) steps each run
as its solo optimizer would.

Each run starts from the solo run's own initial weights (:func:`pack_runs` packs the modules
:func:`bnopt.training.loop.build_run` builds, seed for seed) and draws its own batches and noise, so a
pack computes what its N solo runs compute (``tests/test_pack.py``: float64, every variant).

The measured step is packed too: probes move every run along its own gradient in one pass per
step length, ICS moves the layers before i of every run at once (separable: run r's G' depends
on run r's parameters only), and the curvature's Lanczos iteration runs per run block
(:func:`lanczos_top_runs`: one run's vector never mixes with another's).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from bnopt.plan.runs import RunConfig
from bnopt.training.loop import Run, build_run
from bnopt.training.measure import (
    hvp,
    layer_parameters,
    layered_moved_gradients,
    probing,
)
from bnopt.training.models import Layer, Net
from bnopt.training.normalisers import LpNorm, NoisyBatchNorm, WeightNorm
from bnopt.training.precision import ieee_fp32

Params = dict[str, torch.Tensor]


class GroupedLinear(nn.Module):
    """N independent linear layers of ``in_features`` -> ``out_features`` on a (B, N in) input,
    giving (B, N out). ``weight`` is (N out, in): run r's rows are block r, each row one output
    unit (so weight normalisation over dim 1 is per unit, as in the solo layer)."""

    def __init__(self, runs: int, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.runs, self.in_features, self.out_features = runs, in_features, out_features
        self.weight = nn.Parameter(torch.empty(runs * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(runs * out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[0], self.runs
        xs = x.reshape(b, n, self.in_features).transpose(0, 1)            # (N, B, in)
        w = self.weight.view(n, self.out_features, self.in_features)      # (N, out, in)
        if self.bias is None:
            out = torch.bmm(xs, w.transpose(1, 2))
        else:
            out = torch.baddbmm(self.bias.view(n, 1, self.out_features), xs, w.transpose(1, 2))
        return out.transpose(0, 1).reshape(b, n * self.out_features)


class PackedNoisyBatchNorm(NoisyBatchNorm):
    """Noisy BN over N runs' channel blocks: BatchNorm over N C channels (per run already), then
    each run's noise drawn from its own generator, in the solo layer's order and shapes."""

    def __init__(self, runs: int, solo: NoisyBatchNorm):
        conv = isinstance(solo.bn, nn.BatchNorm2d)
        super().__init__(runs * solo.bn.num_features, conv, n_mu=solo.n_mu, n_sigma=solo.n_sigma,
                         r_mu=solo.r_mu, r_sigma=solo.r_sigma)
        self.generators: list[torch.Generator | None] = [None] * runs

    def sample_noise(self, shape, device, dtype):
        n = len(self.generators)
        run_shape = torch.Size((shape[0], shape[1] // n, *shape[2:]))
        draws = []
        for g in self.generators:
            self.generator = g
            draws.append(super().sample_noise(run_shape, device, dtype))
        s, m = zip(*draws)
        return torch.cat(s, 1), torch.cat(m, 1)


def _cat_state(dst: nn.Module, solos: list[nn.Module]) -> None:
    """Load into ``dst`` the solo modules' parameters and buffers, concatenated along dim 0
    (run-major blocks); a scalar buffer (BatchNorm's step count) is the same in every run."""
    states = [m.state_dict() for m in solos]
    dst.load_state_dict({k: (torch.cat([s[k] for s in states]) if states[0][k].dim() else
                             states[0][k].clone()) for k in states[0]})


def _packed_norm(norm: nn.Module, runs: int) -> nn.Module:
    """The packed counterpart of one layer's normaliser (without its state)."""
    if isinstance(norm, nn.Identity):
        return nn.Identity()
    if isinstance(norm, NoisyBatchNorm):
        return PackedNoisyBatchNorm(runs, norm)
    if isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return type(norm)(runs * norm.num_features, eps=norm.eps, momentum=norm.momentum)
    if isinstance(norm, LpNorm):
        return LpNorm(runs * norm.weight.numel(), norm.p, norm.conv, norm.eps, norm.momentum)
    if isinstance(norm, nn.GroupNorm):  # LayerNorm is GroupNorm(1): one group per run
        return nn.GroupNorm(runs * norm.num_groups, runs * norm.num_channels, norm.eps)
    raise TypeError(f"no packed form of {type(norm).__name__}")


def _packed_weight(w: nn.Module, runs: int) -> nn.Module:
    """The packed counterpart of a weight layer (Conv2d or Linear), without its state."""
    plain = nn.utils.parametrize.is_parametrized(w)
    if isinstance(w, nn.Conv2d):
        out = nn.Conv2d(runs * w.in_channels, runs * w.out_channels, w.kernel_size, w.stride,
                        w.padding, groups=runs, bias=w.bias is not None)
    else:
        out = GroupedLinear(runs, w.in_features, w.out_features, w.bias is not None)
    if plain:  # weight normalisation: g and v as parameters, w = g v / ||v|| per output unit
        nn.utils.parametrize.register_parametrization(out, "weight", WeightNorm(), unsafe=True)
    return out


def pack_models(solos: list[Net]) -> Net:
    """One :class:`bnopt.training.models.Net` computing the N ``solos`` at once (module docstring), with
    their current parameters and buffers. Parameter names are the solo net's."""
    runs = len(solos)
    layers = []
    for parts in zip(*(m.layers for m in solos)):
        first = parts[0]
        layer = Layer(_packed_weight(first.weight_layer, runs), _packed_norm(first.norm, runs),
                      first.act, first.pool, first.flatten)
        _cat_state(layer.weight_layer, [p.weight_layer for p in parts])
        _cat_state(layer.norm, [p.norm for p in parts])
        layers.append(layer)
    p0 = next(solos[0].parameters())
    packed = Net(layers).to(p0.device, p0.dtype)
    if p0.dim() == 4 and p0.is_contiguous(memory_format=torch.channels_last):
        packed = packed.to(memory_format=torch.channels_last)
    return packed


def set_noise_generators(packed: Net, generators: list[torch.Generator]) -> None:
    for m in packed.modules():
        if isinstance(m, PackedNoisyBatchNorm):
            m.generators = list(generators)


def run_state(packed: Net, solo: Net, r: int) -> dict[str, torch.Tensor]:
    """Run ``r``'s parameters and buffers, in the shapes of ``solo``'s state dict."""
    shapes = {k: t.shape for k, t in solo.state_dict().items()}
    out = {}
    for k, t in packed.state_dict().items():
        like = shapes[k]
        # a scalar (BatchNorm's step count) is every run's; a tensor holds N run blocks in dim 0
        out[k] = t.clone() if not like else t.chunk(t.shape[0] // like[0])[r].reshape(like)
    return out


def pack_batches(xs: list[torch.Tensor], ys: list[torch.Tensor], channels_last: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """N runs' batches (each (B, C, ...) and (B,) labels or (B, K) targets) as the pack's input
    (B, N C, ...) and targets (B, N) or (B, N K)."""
    x = torch.stack(xs, 1).flatten(1, 2)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.stack(ys, 1)
    return x, (y if y.dtype == torch.long else y.flatten(1, 2))


def run_losses(out: torch.Tensor, y: torch.Tensor, runs: int) -> torch.Tensor:
    """Each run's mean loss (``bnopt.training.objective.criterion`` per run block), shape (N,)."""
    b = out.shape[0]
    o = out.view(b, runs, -1)
    if y.dtype == torch.long:
        per = F.cross_entropy(o.reshape(b * runs, -1), y.reshape(-1), reduction="none")
        return per.view(b, runs).mean(0)
    return (o - y.view(b, runs, -1)).square().sum(2).mean(0)


def run_accuracy(out: torch.Tensor, y: torch.Tensor, runs: int) -> torch.Tensor:
    b = out.shape[0]
    if y.dtype != torch.long:
        return torch.full((runs,), float("nan"), device=out.device)
    return (out.view(b, runs, -1).argmax(2) == y).float().mean(0)


def run_norms(tensors, runs: int) -> torch.Tensor:
    """Per run, the l2 norm of its blocks of several packed tensors together, shape (N,)."""
    tensors = list(tensors)
    norms = torch._foreach_norm([c for t in tensors for c in t.chunk(runs)])
    return torch.stack(norms).view(len(tensors), runs).square().sum(0).sqrt()


class PackedRecorder:
    """The per-step rows of N runs: (steps, N, 4) = loss, accuracy, |gradient|, |parameters|,
    as :class:`bnopt.training.recorder.Recorder` keeps them for one run."""

    def __init__(self, steps: int, runs: int, device, dtype):
        self.runs = runs
        self.buf = torch.full((steps, runs, 4), float("nan"), device=device, dtype=dtype)

    def step(self, step, losses, out, y, params) -> None:
        row = torch.stack([losses.detach(), run_accuracy(out, y, self.runs).to(losses.dtype),
                           run_norms((p.grad for p in params if p.grad is not None), self.runs),
                           run_norms(params, self.runs)], 1)
        if isinstance(step, torch.Tensor):
            self.buf.index_copy_(0, step, row.unsqueeze(0).to(self.buf.dtype))
        else:
            self.buf[step] = row


def packed_forward_backward(model: Net, opt, x, y, runs: int):
    out = model(x)
    losses = run_losses(out, y, runs)
    opt.zero_grad(set_to_none=True)
    losses.sum().backward()
    return out, losses


def packed_step(model: Net, opt, params, rec: PackedRecorder, step, x, y) -> None:
    """:func:`bnopt.training.steps.plain_step` for a pack (and capturable by
    :class:`bnopt.training.steps.CudaGraphStep` the same way)."""
    out, losses = packed_forward_backward(model, opt, x, y, rec.runs)
    with torch.no_grad():
        rec.step(step, losses, out, y, params)
    opt.step()


class Pack:
    """N runs of one setting (``cfgs`` differ in ``seed`` only) as one packed network: the
    packed model, its optimizer (SGD with the runs' shared settings), each run's own batch stream
    and noise generator. ``solos`` keeps each run's freshly built solo parts (their initial
    state, for comparison and for :func:`run_state`'s shapes)."""

    def __init__(self, cfgs: list[RunConfig], dataset, device: torch.device):
        settings = {k: v for k, v in vars(cfgs[0]).items() if k != "seed"}
        if any({k: v for k, v in vars(c).items() if k != "seed"} != settings for c in cfgs):
            raise ValueError("a pack holds runs that differ in their seed only")
        self.cfgs, self.runs, self.device = cfgs, len(cfgs), device
        self.solos: list[Run] = [build_run(c, dataset, device) for c in cfgs]
        self.model = pack_models([s.model for s in self.solos])
        set_noise_generators(self.model, [s.noise_gen for s in self.solos])
        c = cfgs[0]
        self.params = list(self.model.parameters())
        self.opt = torch.optim.SGD(self.params, lr=c.lr, momentum=c.momentum,
                                   weight_decay=c.weight_decay)
        self.channels_last = self.solos[0].channels_last

    @property
    def generators(self) -> list[torch.Generator]:
        return [s.noise_gen for s in self.solos]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of every run, packed (each run's stream advances by one batch)."""
        xs, ys = zip(*(next(s.batches) for s in self.solos))
        return pack_batches(list(xs), list(ys), self.channels_last)

    def run_state(self, r: int) -> dict[str, torch.Tensor]:
        return run_state(self.model, self.solos[r].model, r)


# ----------------------------------------------------------------------------------------------
# The measured step, packed

def _run_rows(t: torch.Tensor, runs: int) -> torch.Tensor:
    return t.reshape(runs, -1)


def packed_measure_step(model: Net, x, y, runs: int, before: Params, grad: Params,
                        step_sizes) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`bnopt.training.steps.measure_after_step`'s probes and ICS for every run of a pack at once,
    called after the optimizer step (``model`` holds the updated parameters). Returns probes
    (K, N, 3: loss, gradient change, beta) and ICS (L, N, 3: l2, cos, |G|): run r's rows equal
    its solo measured step's. IEEE arithmetic, no side effects (:func:`bnopt.training.measure.probing`)."""
    names = list(before)

    def loss_fn(p):
        return run_losses(functional_call(model, p, (x,)), y, runs)

    with probing(model), ieee_fp32():
        g_norm = run_norms(grad.values(), runs)
        eta = torch.as_tensor(step_sizes, dtype=g_norm.dtype, device=g_norm.device)
        rows = []
        for e in eta:  # every run moves along its own gradient: one pass per step length
            moved = {n: (before[n] - e * grad[n]).requires_grad_() for n in names}
            losses = loss_fn(moved)
            g2 = torch.autograd.grad(losses.sum(), [moved[n] for n in names])
            change = run_norms([a - grad[n] for a, n in zip(g2, names)], runs)
            rows.append(torch.stack([losses.detach(), change, change / (e * g_norm)], 1))
        after = {n: p.detach() for n, p in model.named_parameters()}

        def summed(out, yy):  # the runs' losses summed: run r's gradient is its own
            return run_losses(out, yy, runs).sum()

        ics = _packed_ics(model, summed, x, y, before, after, grad, runs)
    return torch.stack(rows), ics


def _packed_ics(model, loss, x, y, before, after, grad, runs) -> torch.Tensor:
    """(L, N, 3) ICS rows: per run and layer, ||G - G'||, cos(G, G'), ||G||, with G' from the
    pipeline's shared passes (:func:`bnopt.training.measure.layered_moved_gradients`) through the pack."""
    _, weights = layer_parameters(model)
    moved_gradient = layered_moved_gradients(model, loss, x, y, before, after)
    rows = []
    for i, w in enumerate(weights):
        g = _run_rows(grad[w], runs)
        g2 = g if i == 0 else _run_rows(moved_gradient(i, w), runs)
        gn, g2n = torch.linalg.vector_norm(g, dim=1), torch.linalg.vector_norm(g2, dim=1)
        rows.append(torch.stack([torch.linalg.vector_norm(g - g2, dim=1),
                                 (g * g2).sum(1) / (gn * g2n), gn], 1))
    return torch.stack(rows)


def lanczos_top_runs(matvec, start: torch.Tensor, iters: int, tol: float) -> list[dict]:
    """:func:`bnopt.training.measure.lanczos_top` on N independent blocks at once: ``start`` is (N, P),
    ``matvec`` maps (N, P) -> (N, P) block by block (a block-diagonal operator, as the Hessian
    of a pack's summed loss is). Every dot product, norm and reorthogonalisation is per block,
    and each block stops on its own criterion (its later rows are zero), so block r's result
    equals the solo iteration's on block r. One host sync per iteration, as there."""
    runs = start.shape[0]
    q = start / torch.linalg.vector_norm(start, dim=1, keepdim=True)
    basis = q.new_zeros((iters, *q.shape))
    basis[0] = q
    q_prev, beta_prev = torch.zeros_like(q), torch.zeros(runs, dtype=q.dtype, device=q.device)
    alphas, betas = [[] for _ in range(runs)], [[] for _ in range(runs)]
    out: list[dict | None] = [None] * runs
    rayleigh = None
    for k in range(1, iters + 1):
        w = matvec(q)
        alpha = (w * q).sum(1)
        if rayleigh is None:
            rayleigh = alpha
        w = w - alpha[:, None] * q - beta_prev[:, None] * q_prev
        basis_k = basis[:k]
        for _ in range(2):  # full reorthogonalisation, per block
            w = w - torch.einsum("kn,knp->np", torch.einsum("knp,np->kn", basis_k, w), basis_k)
        beta = torch.linalg.vector_norm(w, dim=1)
        host = torch.stack([alpha, beta]).double().cpu().tolist()
        for r in range(runs):
            if out[r] is not None:
                continue
            a_k, b_k = host[0][r], host[1][r]
            if not (math.isfinite(a_k) and math.isfinite(b_k)):
                out[r] = {"theta": float("nan"), "iterations": k, "residual": float("nan")}
                continue
            alphas[r].append(a_k)
            betas[r].append(b_k)
            a = torch.tensor(alphas[r], dtype=torch.float64)
            b = torch.tensor(betas[r][:-1], dtype=torch.float64)
            evals, evecs = torch.linalg.eigh(torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1))
            theta, s_last = float(evals[-1]), float(evecs[-1, -1])
            residual = abs(b_k * s_last) / max(abs(theta), 1e-300)
            if (residual <= tol or b_k <= 1e-12 * max(max(map(abs, alphas[r])), 1e-300)
                    or k == iters):
                out[r] = {"theta": theta, "iterations": k, "residual": residual}
        if all(o is not None for o in out):
            break
        live = torch.tensor([o is None for o in out], device=q.device)
        q_prev, beta_prev = q, beta
        q = torch.where(live[:, None], w / torch.where(live, beta, 1.0)[:, None], 0.0)
        basis[k] = q
    return [{"lambda_max": torch.tensor(o["theta"], dtype=q.dtype, device=q.device),
             "batch_sharpness": rayleigh[r], "iterations": o["iterations"],
             "residual": o["residual"]} for r, o in enumerate(out)]


def packed_curvature(model: Net, x, y, runs: int, before: Params, grad: Params, iters: int,
                     tol: float) -> list[dict]:
    """:func:`bnopt.training.measure.measure_curvature` for every run of a pack: Lanczos on the Hessian
    of the summed loss (block-diagonal: one block per run), started from each run's gradient,
    each block on its own (:func:`lanczos_top_runs`). A list of N solo-shaped results."""
    names = list(before)
    shapes = [before[n].shape for n in names]
    sizes = [before[n].numel() // runs for n in names]

    def loss_fn(p):
        return run_losses(functional_call(model, p, (x,)), y, runs).sum()

    def matvec(v: torch.Tensor) -> torch.Tensor:  # (N, P) -> (N, P)
        parts = {n: t.reshape(s) for n, t, s in zip(names, v.split(sizes, dim=1), shapes)}
        _, hv = hvp(loss_fn, before, parts)
        return torch.cat([_run_rows(hv[n], runs) for n in names], 1)

    with probing(model), ieee_fp32():
        g = torch.cat([_run_rows(grad[n], runs) for n in names], 1)
        return lanczos_top_runs(matvec, g, iters, tol)

