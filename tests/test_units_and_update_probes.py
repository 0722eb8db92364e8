"""Two measurements the earlier experiments need: the percentiles of single units' inputs over
training (Ioffe & Szegedy's Figure 1(b, c); ``units_per_layer``, units.parquet) and the loss
landscape along the update the optimizer made, not only along the gradient (Adam's;
``probe_update``, update_probes.parquet). Each against a closed form, and neither may change
what the run computes nor, left off, what the workflow asks of a finished run."""
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.runs import RunConfig, plan, tracked_settings
from bnopt.plan.tables import OPTIONAL_TABLES, TABLES, written_tables
from bnopt.training.loop import train_run
from bnopt.training.measure import (
    probe_along_gradient,
    probe_along_update,
    unit_indices,
    unit_percentiles,
)
from bnopt.training.objective import criterion
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.mark.parametrize("units,k,want", [(100, 3, [0, 50, 99]), (10, 3, [0, 4, 9]),
                                          (100, 1, [0]), (2, 3, [0, 1]), (5, 0, [])])
def test_followed_units_are_evenly_spaced_first_to_last(units, k, want):
    assert unit_indices(units, k) == want


def test_unit_percentiles_are_over_the_batch_and_positions_of_each_unit():
    """Channel c holds a shuffle of c * 1000 + 0..n-1 over (batch, positions): its p-quantile
    (linear interpolation) is c * 1000 + p (n - 1)."""
    gen = torch.Generator().manual_seed(0)
    n_batch, channels, h, w = 6, 5, 3, 4
    n = n_batch * h * w
    z = torch.empty(n_batch, channels, h, w)
    for c in range(channels):
        z[:, c] = (c * 1000 + torch.randperm(n, generator=gen).float()).reshape(n_batch, h, w)
    q = torch.tensor([0.15, 0.5, 0.85])
    got = unit_percentiles(z.contiguous(memory_format=torch.channels_last), torch.tensor([0, 2, 4]), q)
    want = torch.tensor([[c * 1000 + p * (n - 1) for p in (0.15, 0.5, 0.85)] for c in (0, 2, 4)])
    torch.testing.assert_close(got, want)
    flat = torch.randn(7, 3, generator=gen)  # an MLP's (batch, units)
    torch.testing.assert_close(unit_percentiles(flat, torch.tensor([1]), q)[0],
                               torch.from_numpy(np.quantile(flat[:, 1].numpy(), [0.15, 0.5, 0.85])).float())


def test_probes_along_a_direction_on_a_quadratic_are_its_closed_form():
    """L(x) = 1/2 x^T A x, g = A x, points x - e d: the loss 1/2 (x - e d)^T A (x - e d), the
    gradient change e ||A d|| and beta ||A d|| / ||d||, whatever d is."""
    a = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    x = {"x": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    d = {"x": torch.tensor([0.3, 0.7], dtype=torch.float64)}
    g = {"x": a @ x["x"]}
    eta = [0.5, 1.0, 2.0]
    for vectorize in (False, True):
        out = probe_along_gradient(lambda p: 0.5 * p["x"] @ a @ p["x"], x, g, eta, vectorize,
                                   direction=d)
        pts = [x["x"] - e * d["x"] for e in eta]
        torch.testing.assert_close(out["loss"], torch.stack([0.5 * p @ a @ p for p in pts]))
        ad = torch.linalg.vector_norm(a @ d["x"])
        torch.testing.assert_close(out["grad_change"], torch.tensor(eta, dtype=torch.float64) * ad)
        torch.testing.assert_close(out["beta"], (ad / torch.linalg.vector_norm(d["x"])).expand(3))


def _linear_step(momentum: float, steps: int):
    """A linear classifier after ``steps`` SGD steps on one batch: (model, x, y, before, grad)
    of the last step, the model holding the updated weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3).double()
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        criterion(model(x), y).backward()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        grad = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
    return model, x, y, before, grad


def test_update_probes_step_along_the_update_made():
    """With momentum the update is not the gradient's: the point m = 1 is where the step went
    (its loss is the updated model's), ``distance`` is m times the step's length, and nothing
    in the model changes."""
    model, x, y, before, grad = _linear_step(momentum=0.9, steps=3)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = probe_along_update(model, criterion, x, y, before, grad, [0.5, 1.0, 2.0])
    torch.testing.assert_close(out["loss"][1], criterion(model(x), y).detach())
    step = torch.sqrt(sum((after[n] - before[n]).square().sum() for n in after))
    torch.testing.assert_close(out["distance"], torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64) * step)
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), after[n])
    # and the update is not -lr * g here: the gradient probes would be elsewhere
    g_step = 0.2 * torch.sqrt(sum(v.square().sum() for v in grad.values()))
    assert not torch.isclose(step, g_step, rtol=1e-3)


def test_plain_sgds_update_probes_are_its_gradient_probes():
    """Plain SGD's update is -lr g: the update probes at m are the gradient probes at m * lr."""
    model, x, y, before, grad = _linear_step(momentum=0.0, steps=1)
    up = probe_along_update(model, criterion, x, y, before, grad, [0.5, 1.0, 3.0])

    def loss_fn(p):
        return criterion(torch.func.functional_call(model, p, (x,)), y)
    gr = probe_along_gradient(loss_fn, before, grad, [0.1, 0.2, 0.6])
    for k in ("loss", "grad_change", "beta"):
        torch.testing.assert_close(up[k], gr[k])


def _run(synthetic, **kw):
    cfg = RunConfig(dataset="synthetic", model="mlp", variant="batchnorm", lr=1e-3, seed=0,
                    steps=12, batch_size=32, eval_every=6, log_every=4, measure_every=5,
                    hist_every=0, device="cpu", optimizer="adam", activation="sigmoid",
                    mlp_widths=(20, 20, 20), **kw)
    return train_run(cfg, synthetic, progress=False)


def test_the_two_measurements_change_nothing_else_the_run_records(synthetic):
    """On, they add their tables; every other table is bitwise the run's without them (they
    read the step, they do not touch the model, its statistics, the optimizer or an RNG)."""
    off = _run(synthetic)
    on = _run(synthetic, units_per_layer=3, probe_update=True)
    for name in TABLES:
        cols = [c for c in TABLES[name] if c != "elapsed_s"]
        pd.testing.assert_frame_equal(on.tables[name][cols], off.tables[name][cols])
    units = on.tables["units"]
    # steps 0, 5, 10; three units of each hidden layer (20 wide) and of the 10 logits
    assert list(units.groupby("step").size()) == [4 * 3] * 3
    assert set(units[units.layer == 3].unit) == {0, 10, 19}
    assert (units.q15 <= units.q50).all() and (units.q50 <= units.q85).all()
    upd = on.tables["update_probes"]
    assert list(upd.columns) == OPTIONAL_TABLES["update_probes"][0]
    assert len(upd) == 3 * len(on.tables["probes"].point.unique()) and (upd.distance > 0).all()
    assert off.tables["units"].empty and off.tables["update_probes"].empty


def test_left_off_the_workflow_asks_no_run_for_them():
    """The train rule's outputs are TABLES alone unless a config turns one on, and turning one
    on does not touch the DLN's tracked settings (its runs write the table empty)."""
    cfg = check_config(BASE)
    assert written_tables(cfg) == TABLES
    on = check_config({**BASE, "units_per_layer": 2, "probe_update": True})
    assert set(written_tables(on)) == set(TABLES) | {"units", "update_probes"}
    base = {r.folder: tracked_settings(r) for r in plan(cfg)}
    for r in plan(on):
        if r.model == "dln":
            assert tracked_settings(r) == base[r.folder]
        else:
            assert tracked_settings(r)["units_per_layer"] == 2


def test_their_figures_are_refused_with_the_setting_to_turn_on():
    from bnopt.plan.figure_specs import figure_blockers

    blocked = figure_blockers(check_config(BASE))
    assert blocked["fig19_unit_percentiles"].startswith(
        "results/figures/fig19_unit_percentiles.png needs units_per_layer > 0, but this config "
        "turns it off")
    assert "`--config units_per_layer=100`" in blocked["fig19_unit_percentiles"]
    assert blocked["fig4u_update_landscape"].startswith(
        "results/figures/fig4u_update_landscape.png needs probe_update: true, but")
    assert "`--config probe_update=true`" in blocked["fig4u_update_landscape"]
    on = check_config({**BASE, "units_per_layer": 2, "probe_update": True})
    assert not {"fig19_unit_percentiles", "fig4u_update_landscape"} & set(figure_blockers(on))
