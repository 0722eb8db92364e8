"""Claim 2's moment shift on a fixed probe batch (bnopt.training.measure.probe_moments and
probe_shift): closed forms on a linear layer, no side effects on the model, its running
statistics or any RNG stream, and a run's other tables bitwise unchanged by it."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from bnopt.plan.runs import RunConfig
from bnopt.training import steps as steps_module
from bnopt.training.loop import train_run
from bnopt.training.measure import probe_moments, probe_shift
from bnopt.training.models import build_model
from bnopt.training.normalisers import noisy_modules, set_noise_generator


class Linear(nn.Module):
    """z = W x, its pre-activations collected as the package's networks collect theirs."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x, preacts=None):
        z = x @ self.w.T
        if preacts is not None:
            preacts.append(z)
        return z


def test_the_shift_of_a_linear_layer_is_its_closed_form():
    """z_j = w_j . x on a fixed batch X: the update W -> W + D moves unit j's mean by d_j . mean(X)
    and its variance from w_j' S w_j to (w_j + d_j)' S (w_j + d_j), S the batch covariance (the
    sample covariance, as every recorded variance is); the floor compares the two halves of X."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64) * torch.arange(1, 6) + 0.3
    w, d = (torch.randn(7, 5, generator=g, dtype=torch.float64) for _ in range(2))
    net = Linear(w)
    gen = torch.Generator().manual_seed(1)
    before = probe_moments(net, x, gen, halves=True)
    with torch.no_grad():
        net.w += 0.1 * d
    after = probe_moments(net, x, gen)
    row = probe_shift(before, after)[0]

    def moments(xs, ws):
        c = xs - xs.mean(0)
        return xs.mean(0) @ ws.T, torch.einsum("jk,kl,jl->j", ws, c.T @ c / (len(xs) - 1), ws)

    m0, v0 = moments(x, w)
    m1, v1 = moments(x, w + 0.1 * d)
    (ma, va), (mb, vb) = moments(x[:32], w), moments(x[32:], w)
    expect = [((m1 - m0).abs() / v0.sqrt()).median(), ((v1 - v0).abs() / v0).median(),
              ((ma - mb).abs() / v0.sqrt()).median() / math.sqrt(2),
              ((va - vb).abs() / v0).median() / math.sqrt(2)]
    # the moments are taken in float32, as every activation statistic is
    torch.testing.assert_close(row, torch.stack(expect).float(), rtol=2e-5, atol=0)
    # no update, no shift: the same batch twice
    again = probe_shift(before, probe_moments(Linear(w), x, gen))[0]
    assert again[0] == 0 and again[1] == 0


@pytest.mark.parametrize("variant", ["batchnorm", "noisy_batchnorm", "standard"])
def test_the_probe_batch_changes_nothing_the_training_sees(variant):
    """Running statistics, num_batches_tracked, the training noise stream, the noise the step's
    probes reuse and the global RNG are all as they were."""
    torch.manual_seed(0)
    net = build_model("vgg", variant, 1, 16, 10, width=0.125).double().train()
    train_gen = torch.Generator().manual_seed(5)
    set_noise_generator(net, train_gen)
    net(torch.randn(32, 1, 16, 16, dtype=torch.float64))  # a training pass: its noise is kept
    state = {k: v.clone() for k, v in net.state_dict().items()}
    noise = [tuple(t.clone() for t in m._noise) for m in noisy_modules(net)]
    train_state, rng = train_gen.get_state(), torch.get_rng_state()
    probe_gen = torch.Generator().manual_seed(9)
    out = probe_moments(net, torch.randn(64, 1, 16, 16, dtype=torch.float64,
                                         generator=torch.Generator().manual_seed(2)),
                        probe_gen, halves=True)
    assert len(out) == 14 and out[0].shape[:2] == (3, 2)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(train_gen.get_state(), train_state)
    assert torch.equal(torch.get_rng_state(), rng)
    for m, (s, mu) in zip(noisy_modules(net), noise):
        assert torch.equal(m._noise[0], s) and torch.equal(m._noise[1], mu)
        assert m.generator is train_gen and not m.reuse
    if variant == "noisy_batchnorm":  # its own stream: it drew fresh noise there
        assert not torch.equal(probe_gen.get_state(), torch.Generator().manual_seed(9).get_state())


def test_a_runs_other_tables_are_bitwise_the_same_with_the_probe_batch(synthetic, monkeypatch):
    """The probe batch's passes change no number of the run: with them replaced by NaN rows,
    every table but the four probe-shift columns is identical."""
    cfg = RunConfig(dataset="synthetic", model="vgg", variant="noisy_batchnorm", lr=0.05, seed=0,
                    steps=24, batch_size=64, width=0.125, eval_every=12, log_every=6,
                    device="cpu", measure_every=4, hist_every=8)
    real = train_run(cfg, synthetic, progress=False)
    monkeypatch.setattr(steps_module, "probe_moments", lambda model, x, gen, halves=False: None)
    monkeypatch.setattr(steps_module, "probe_shift", lambda b, a: torch.full((14, 4), np.nan))
    without = train_run(cfg, synthetic, progress=False)
    probe = ["probe_mean_shift", "probe_var_shift", "floor_mean_shift", "floor_var_shift"]
    for name, table in real.tables.items():
        other = without.tables[name]
        keep = [c for c in table.columns if c not in probe and c != "elapsed_s"]
        assert table[keep].equals(other[keep]), name
    acts = real.tables["activations"]  # a row per measured step and layer, each with its shift
    assert sorted(set(acts.step)) == [0, 4, 8, 12, 16, 20] and acts[probe].notna().all().all()
    assert (acts.probe_mean_shift > 0).all()
