"""Label-free distillation of a converted module: on a small CNN trained here on sklearn's digits, converted
at rank 1 and calibrated, distillation lowers the held-back output error and raises test accuracy; a run
that makes things worse is undone; runs are repeatable; both modules come back in the modes they had."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch_builders import plan_of, planned

from sepconv_cli.backends.base import ConvertOptions, LoadedModel
from sepconv_cli.backends.torch.calibrate import calibrate_torch
from sepconv_cli.backends.torch.distill import DistillOptions, distill, worst_rel_l2
from sepconv_cli.backends.torch.rewriter import MODULE_BACKEND
from sepconv_cli.calibration.solve import CalibOptions, split_samples
from sepconv_cli.errors import UsageError

pytestmark = pytest.mark.slow  # the module's trained fixture takes seconds


class DigitsNet(nn.Module):
    """conv-BN-ReLU x2, max-pool, a residual conv-BN-ReLU, global mean, linear head (8x8 digits)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = x + torch.relu(self.bn3(self.conv3(x)))
        return self.head(self.drop(x.mean((2, 3))))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module (two engineers' test runs share two cores), restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(one_thread):
    """DigitsNet trained for 8 epochs (about 99% test accuracy), its rank-1 conversion calibrated on 256
    unlabeled training images, and the test split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1300], order[1300:]
    torch.manual_seed(0)
    net = DigitsNet()
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    generator = torch.Generator().manual_seed(0)
    for _ in range(8):
        perm = torch.randperm(len(train), generator=generator)
        for i in range(0, len(train), 64):
            batch = perm[i:i + 64]
            loss = nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    plan = plan_of(*(planned(net, f"conv{i}", 1, f"bn{i}") for i in (1, 2, 3)))
    converted = MODULE_BACKEND.rewrite(LoadedModel(report=None, handle=None, native=net), plan, ConvertOptions())
    calib = {"x": x[train[:256]]}
    calibrated = calibrate_torch(net, converted.native, converted.plan, calib, CalibOptions()).model
    return {"net": net, "calibrated": calibrated, "calib": calib, "x": x[test], "y": y[test]}


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float(np.mean(model(torch.from_numpy(x)).argmax(1).numpy() == y))


def _held_error(original: nn.Module, model: nn.Module, calib: dict) -> float:
    _fit, held = split_samples(len(calib["x"]), 0.25, 0)
    with torch.no_grad():
        t = torch.from_numpy(calib["x"][held])
        return worst_rel_l2({"o": original(t).numpy()}, {"o": model(t).numpy()}, {})


def test_distillation_lowers_held_back_error_and_raises_accuracy(trained):
    net, calib = trained["net"], trained["calib"]
    model = copy.deepcopy(trained["calibrated"])
    before_params = [p.detach().clone() for p in net.parameters()]
    report = distill(net, model, calib, 100, DistillOptions(threads=1))
    assert (report.samples_fit, report.samples_holdout, report.basis, report.steps) == (192, 64, "holdout", 100)
    assert report.kept and report.error_after < 0.9 * report.error_before and report.gain > 1.1
    assert report.error_before == pytest.approx(_held_error(net, trained["calibrated"], calib), rel=1e-5)
    assert report.error_after == pytest.approx(_held_error(net, model, calib), rel=1e-5)
    assert report.loss_last < report.loss_first
    original = _accuracy(net, trained["x"], trained["y"])
    calibrated = _accuracy(trained["calibrated"], trained["x"], trained["y"])
    distilled = _accuracy(model, trained["x"], trained["y"])
    assert original > 0.95 and distilled > calibrated + 0.03, (original, calibrated, distilled)
    assert all(torch.equal(a, b) for a, b in zip(before_params, net.parameters()))  # the original is untouched
    assert not net.training and not model.training


def test_a_run_that_makes_things_worse_is_undone(trained):
    model = copy.deepcopy(trained["calibrated"])
    saved = copy.deepcopy(model.state_dict())
    report = distill(trained["net"], model, trained["calib"], 5, DistillOptions(lr=1.0, threads=1))
    assert not report.kept and report.error_after > report.error_before and report.gain == 1.0
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_runs_are_repeatable_and_restore_modes_and_flags(trained):
    runs = []
    for _ in range(2):
        model = copy.deepcopy(trained["calibrated"])
        model.train()
        model.head.weight.requires_grad_(False)
        distill(trained["net"], model, trained["calib"], 12, DistillOptions(batch=16, threads=1, seed=3))
        assert model.training and not model.head.weight.requires_grad
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["conv1.depthwise.weight"], trained["calibrated"].state_dict()["conv1.depthwise.weight"])


def test_no_holdout_judges_on_the_fit_samples_and_progress_is_reported(trained):
    seen = []
    model = copy.deepcopy(trained["calibrated"])
    options = DistillOptions(holdout=0.0, threads=1, progress=lambda step, steps: seen.append((step, steps)))
    report = distill(trained["net"], model, {"x": trained["calib"]["x"][:64]}, 25, options)
    assert (report.basis, report.samples_fit, report.samples_holdout) == ("fit", 64, 0)
    assert seen == [(10, 25), (20, 25), (25, 25)]


def test_refusals(trained):
    with pytest.raises(UsageError, match="at least 1"):
        distill(trained["net"], copy.deepcopy(trained["calibrated"]), trained["calib"], 0)
    with pytest.raises(UsageError, match="same, non-zero number of samples"):
        distill(trained["net"], copy.deepcopy(trained["calibrated"]), {"x": trained["calib"]["x"][:0]}, 3)
