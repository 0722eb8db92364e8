"""The fast measured step equals the naive deep-copy one (the earlier attempts' way)."""
import pytest
import torch

from bnopt.studies.naive import copy_model, naive_measure_step
from bnopt.training.measure import measure_step
from bnopt.training.models import build_model
from bnopt.training.normalisers import set_noise_generator
from bnopt.training.objective import criterion


@pytest.mark.parametrize("model,variant,shape", [("vgg", "batchnorm", (32, 1, 8, 8)),
                                                 ("vgg", "noisy_batchnorm", (32, 1, 8, 8)),
                                                 ("vgg", "l1", (32, 1, 8, 8)),
                                                 ("dln", "batchnorm", (64, 10))])
def test_fast_measured_step_equals_the_naive_one(model, variant, shape):
    torch.manual_seed(0)
    net = build_model(model, variant, shape[1], shape[-1] if len(shape) > 2 else 1, 10,
                      width=0.125).double()
    set_noise_generator(net, torch.Generator().manual_seed(1))
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randint(0, 10, (shape[0],)) if model == "vgg" else torch.randn(shape[0], 10,
                                                                               dtype=torch.float64)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):  # give the optimizer momentum state
        opt.zero_grad()
        criterion(net(x), y).backward()
        opt.step()
    opt.zero_grad()
    criterion(net(x), y).backward()  # the measured step's own forward (draws its noise)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    grad = {n: p.grad.detach().clone() for n, p in net.named_parameters()}
    snapshot = copy_model(net)
    opt.step()
    steps = [0.025, 0.1, 0.2]
    fast = measure_step(net, criterion, x, y, before, grad, steps)
    naive = naive_measure_step(snapshot, net, criterion, x, y, grad, steps)
    for k in ("loss", "grad_change", "beta"):
        torch.testing.assert_close(fast[0][k], naive[0][k], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fast[1], naive[1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fast[2][1:], naive[2][1:], rtol=1e-9, atol=1e-12)
