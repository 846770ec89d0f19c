"""One training run: exact reproducibility, outputs, early stopping, NaN handling, prediction, device."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import robustseg.nn.train as train_mod
from robustseg.errors import InputError, RunError
from robustseg.labels import CLASS_NAMES
from robustseg.nn.dataset import load_arrays
from robustseg.nn.device import resolve_amp, select_device
from robustseg.nn.predict import load_model, predict_proba
from robustseg.nn.train import TrainConfig, train_run

TINY = {"model_kwargs": {"base": 4, "depth": 2}, "batch_size": 8, "max_epochs": 2, "lr": 3e-3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def arrays(phantom_index):
    """Phantom at 32 px: first 24 images train, the rest validate."""
    images, masks = load_arrays(phantom_index, 32)
    return (images[:24], masks[:24]), (images[24:], masks[24:])


def _tensors(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_same_config_and_seed_gives_identical_checkpoints_and_metrics(arrays, tmp_path):
    cfg = TrainConfig(**TINY, seed=3)
    r1 = train_run(cfg, *arrays, tmp_path / "a")
    r2 = train_run(cfg, *arrays, tmp_path / "b")
    s1, s2 = _tensors(r1.checkpoint), _tensors(r2.checkpoint)
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert r1.checkpoint.read_bytes() == r2.checkpoint.read_bytes()
    pd.testing.assert_frame_equal(r1.history.drop(columns="seconds"), r2.history.drop(columns="seconds"))
    assert r1.val_dice == r2.val_dice or all(
        np.isnan(a) and np.isnan(b) or a == b
        for a, b in zip(r1.val_dice.values(), r2.val_dice.values(), strict=True)
    )
    # A different seed gives a different model: the test can fail.
    r3 = train_run(TrainConfig(**TINY, seed=4), *arrays, tmp_path / "c")
    s3 = _tensors(r3.checkpoint)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_worker_processes_do_not_change_the_result(arrays, tmp_path):
    base = {**TINY, "max_epochs": 1}
    r0 = train_run(TrainConfig(**base, num_workers=0), *arrays, tmp_path / "w0")
    r1 = train_run(TrainConfig(**base, num_workers=1), *arrays, tmp_path / "w1")
    s0, s1 = _tensors(r0.checkpoint), _tensors(r1.checkpoint)
    assert all(torch.equal(s0[k], s1[k]) for k in s0)


def test_outputs_history_and_prediction(arrays, tmp_path):
    seen = []
    res = train_run(TrainConfig(**TINY), *arrays, tmp_path, progress=lambda e, m, d: seen.append((e, m, d)))
    hist = pd.read_csv(tmp_path / "history.csv")
    expected = ["epoch", "train_loss", "val_loss", "lr", *[f"val_dice_{c}" for c in CLASS_NAMES], "seconds"]
    assert list(hist.columns) == expected
    assert list(hist["epoch"]) == [1, 2] and res.epochs_run == 2
    assert [e for e, _, _ in seen] == [1, 2] and all(m == 2 for _, m, _ in seen)
    assert res.best_val_loss == pytest.approx(hist["val_loss"].min())
    assert res.best_epoch == int(hist.loc[hist["val_loss"].idxmin(), "epoch"])
    assert set(res.val_dice) == set(CLASS_NAMES)

    model, cfg = load_model(res.checkpoint, "cpu")
    assert cfg == TrainConfig(**TINY)
    images = arrays[1][0][:5]
    proba = predict_proba(model, images, batch_size=2, amp="off")  # exact fp32 (bf16: see test_models)
    assert proba.shape == (5, len(CLASS_NAMES), 32, 32) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    x = torch.from_numpy(((images.astype(np.float32) / 255 - 0.5) / 0.5)[:, None])
    with torch.no_grad():
        direct = torch.softmax(model.eval()(x), dim=1).numpy()
    np.testing.assert_allclose(proba, direct, atol=1e-4)


def test_early_stopping_and_lr_schedule(arrays, tmp_path, monkeypatch):
    losses_seq = iter([1.0, 0.9, 0.95, 0.97, 0.99, 1.0])

    def fake_validate(model, criterion, loader, to_dev, precision, num_classes):
        return next(losses_seq), np.full(num_classes, 0.5)

    monkeypatch.setattr(train_mod, "_validate", fake_validate)
    cfg = TrainConfig(**{**TINY, "max_epochs": 6}, early_stopping_patience=2, lr_patience=0, lr_factor=0.5)
    res = train_run(cfg, *arrays, tmp_path)
    assert res.stopped_early and res.epochs_run == 4 and res.best_epoch == 2
    assert res.best_val_loss == pytest.approx(0.9)
    lrs = list(res.history["lr"])  # lr in effect during each epoch; halves after each non-improving epoch
    assert lrs == pytest.approx([3e-3, 3e-3, 3e-3, 1.5e-3])
    assert torch.load(res.checkpoint, weights_only=True)["epoch"] == 2


def test_non_finite_loss_raises_and_keeps_the_good_checkpoint(arrays, tmp_path, monkeypatch):
    real_create = train_mod.losses.create
    calls = {"n": 0}

    def create(name, **kw):
        inner = real_create(name, **kw)

        class Poisoned(torch.nn.Module):
            def forward(self, logits, target):
                calls["n"] += 1
                value = inner(logits, target)
                return value * float("nan") if calls["n"] > 5 else value  # epoch 1: 3 train + 2 val calls

        return Poisoned()

    monkeypatch.setattr(train_mod.losses, "create", create)
    cfg = TrainConfig(**{**TINY, "max_epochs": 3})
    with pytest.raises(RunError, match=r"non-finite training loss .* epoch 2, step \d"):
        train_run(cfg, *arrays, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"model": "nope"}, "model"),
        ({"loss": "nope"}, "loss"),
        ({"oversampling": 0.0}, "oversampling"),
        ({"channels_last": "yes"}, "channels_last"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**kw)


def test_config_round_trip_and_unknown_keys():
    cfg = TrainConfig(**TINY)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="bogus"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_bad_arrays_are_input_errors(arrays, tmp_path):
    (ti, tm), val = arrays
    with pytest.raises(InputError, match="train_arrays"):
        train_run(TrainConfig(**TINY), (ti.astype(np.float32), tm), val, tmp_path)
    bad = tm.copy()
    bad[0, 0, 0] = 9
    with pytest.raises(InputError, match="mask value 9"):
        train_run(TrainConfig(**TINY), (ti, bad), val, tmp_path)


def test_device_and_precision_choices():
    assert select_device("cpu").type == "cpu"
    with pytest.raises(InputError, match="device"):
        select_device("tpu")
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu).dtype is None  # training: fp32 on CPU (see device.CPU_TRAIN_BF16_AUTO)
    assert resolve_amp("fp32", cpu).dtype is None and resolve_amp("off", cpu).dtype is None
    assert resolve_amp("bf16", cpu).dtype == torch.bfloat16
    with pytest.raises(InputError, match="fp16"):
        resolve_amp("fp16", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            select_device("cuda")
        assert select_device("auto").type == "cpu"


@pytest.mark.slow
def test_small_model_learns_the_small_structures(phantom_index, tmp_path):
    images, masks = load_arrays(phantom_index, 64)
    cfg = TrainConfig(
        model_kwargs={"base": 8, "depth": 3},
        max_epochs=40,
        lr=3e-3,
        lr_patience=3,
        early_stopping_patience=10,
        size=64,
    )
    res = train_run(cfg, (images[:28], masks[:28]), (images[28:], masks[28:]), tmp_path)
    # An untrained network scores 0 on both (it never predicts these rare classes).
    assert res.val_dice["csp"] > 0.1 and res.val_dice["lv"] > 0.1, res.val_dice
    assert res.history["val_loss"].min() < res.history["val_loss"].iloc[0]


def test_poly_lr_and_selection_key():
    assert train_mod.poly_lr(1.0, 1, 10) == 1.0
    assert train_mod.poly_lr(1.0, 6, 10) == pytest.approx(0.5**0.9)
    assert train_mod.poly_lr(2e-3, 10, 10) == pytest.approx(2e-3 * 0.1**0.9)
    dice = np.array([0.9, 0.8, 0.2, 0.6])
    assert train_mod.selection_key("val_loss", 0.5, dice) == (-0.5,)
    assert train_mod.selection_key("small_dice", 0.5, dice) == pytest.approx((0.4, -0.5))
    # a small class absent from validation (NaN) is left out; none present: 0, ties broken by the loss
    assert train_mod.selection_key("small_dice", 0.5, np.array([1, 1, np.nan, 0.6]))[0] == pytest.approx(0.6)
    assert train_mod.selection_key("small_dice", 0.4, np.full(4, np.nan)) > train_mod.selection_key(
        "small_dice", 0.5, np.full(4, np.nan)
    )
    # another data set's small structures (labels 3 and 4 of five classes), not the fetal (2, 3)
    five = np.array([0.9, 0.8, 0.1, 0.5, 0.7])
    assert train_mod.selection_key("small_dice", 0.5, five, (3, 4)) == pytest.approx((0.6, -0.5))


def test_checkpoint_by_small_dice_and_poly_schedule(arrays, tmp_path, monkeypatch):
    # validation loss keeps falling while the small-structure Dice peaks at epoch 2
    seq = iter([(1.0, 0.1), (0.9, 0.7), (0.8, 0.3), (0.7, 0.2), (0.6, 0.2)])

    def fake_validate(model, criterion, loader, to_dev, precision, num_classes):
        loss, d = next(seq)
        return loss, np.array([0.9, 0.9, d, d])

    monkeypatch.setattr(train_mod, "_validate", fake_validate)
    cfg = TrainConfig(**{**TINY, "max_epochs": 5}, early_stopping_patience=2, checkpoint_metric="small_dice",
                      lr_schedule="poly")
    res = train_run(cfg, *arrays, tmp_path)
    assert res.best_epoch == 2 and res.stopped_early and res.epochs_run == 4
    assert res.val_dice["csp"] == pytest.approx(0.7) and res.best_val_loss == pytest.approx(0.9)
    assert list(res.history["lr"]) == pytest.approx([train_mod.poly_lr(3e-3, e, 5) for e in range(1, 5)])
    assert torch.load(res.checkpoint, weights_only=True)["epoch"] == 2


def test_patch_training_validates_on_whole_images(arrays, tmp_path):
    cfg = TrainConfig(**{**TINY, "max_epochs": 1}, size=32, patch_size=16, foreground_fraction=0.5)
    res = train_run(cfg, *arrays, tmp_path)
    assert res.epochs_run == 1 and np.isfinite(res.best_val_loss)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"patch_size": 8}, "patch_size"),
        ({"patch_size": 512, "size": 256}, "patch_size"),
        ({"foreground_fraction": 1.5}, "foreground_fraction"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"checkpoint_metric": "dice"}, "checkpoint_metric"),
    ],
)
def test_recipe_options_are_validated(kw, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**kw)


def test_deep_supervision_heads_weights_and_training(arrays, tmp_path):
    from robustseg.nn import losses, models

    torch.manual_seed(0)
    model = models.create("attention_unet", in_channels=1, num_classes=4, base=4, depth=3)
    aux = train_mod.DeepSupervision(model, 4, 2)
    assert aux.weights == pytest.approx([4 / 7, 2 / 7, 1 / 7]) and len(aux.heads) == 2
    crit = losses.create("ce")
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 4, (2, 32, 32))
    model.train()
    logits = model(x)
    shapes = [tuple(f.shape[-2:]) for f in aux._features]
    assert shapes == [(16, 16), (8, 8)]
    total = aux.loss(crit, logits, y)
    plain = crit(logits, y)
    assert torch.isfinite(total) and not torch.isclose(total, plain)
    total.backward()
    assert all(h.weight.grad is not None for h in aux.heads)
    model.eval()
    with torch.no_grad():
        model(x)
    assert aux._features == [None, None]  # nothing captured outside training
    with pytest.raises(InputError, match="deep_supervision"):
        train_mod.DeepSupervision(model, 4, 3)
    res = train_run(TrainConfig(**{**TINY, "max_epochs": 1}, deep_supervision=1), *arrays, tmp_path)
    state = torch.load(res.checkpoint, weights_only=True)["state_dict"]
    assert not any(k.startswith("heads") for k in state)


@pytest.mark.parametrize(("big", "small"), [((96, 96), (48, 48)), ((96, 64), (24, 16)), ((12, 10), (5, 4))])
def test_deep_supervision_labels_equal_nearest_interpolation(big, small):
    from robustseg.nn.train import _downsample_labels

    y = torch.randint(0, 4, (2, *big))
    want = torch.nn.functional.interpolate(y[:, None].float(), size=small, mode="nearest")[:, 0].long()
    assert torch.equal(_downsample_labels(y, small), want)
