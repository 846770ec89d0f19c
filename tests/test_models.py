"""Model registry: smoke test over every entry, attention gates, parameter counts, BN folding."""

from __future__ import annotations

import pytest
import torch

from robustseg.errors import InputError
from robustseg.nn.models import count_parameters, create, list_models
from robustseg.nn.models.attention_unet import AttentionUNet
from robustseg.nn.predict import fold_batchnorm

SMALL_KW = {
    "attention_unet": {"base": 4, "depth": 3},
    "unet": {"base": 4, "depth": 3},
    "timm_unet": {"encoder": "resnet18", "pretrained": False, "decoder_widths": (32, 16, 16, 8)},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_registry_entry_is_covered():
    assert sorted(SMALL_KW) == list_models()


@pytest.mark.parametrize("name", sorted(SMALL_KW))
def test_forward_backward_smoke(name):
    torch.manual_seed(0)
    model = create(name, in_channels=1, num_classes=4, **SMALL_KW[name])
    x = torch.randn(2, 1, 32, 32)
    out = model(x)
    assert out.shape == (2, 4, 32, 32)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_unknown_model_lists_valid_names():
    with pytest.raises(InputError, match="attention_unet, timm_unet, unet"):
        create("segformer")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"norm": "layer"}, "norm"),
        ({"depth": 0}, "depth"),
        ({"base": 0}, "base"),
        ({"dropout": 1.5}, "dropout"),
        ({"init": "xavier"}, "init"),
        ({"decoder_convs": 3}, "decoder_convs"),
        ({"decoder_convs": True}, "decoder_convs"),
    ],
)
def test_bad_options_are_input_errors(kw, match):
    with pytest.raises(InputError, match=match):
        create("attention_unet", **kw)


def test_he_init_is_nnunets_and_torch_init_is_unchanged():
    """``init="he"``: Kaiming normal (slope 0.01), zero biases; the default keeps PyTorch's initialisation."""
    torch.manual_seed(0)
    he = create("attention_unet", base=16, depth=2, init="he")
    torch.manual_seed(0)
    default = create("attention_unet", base=16, depth=2)
    torch.manual_seed(0)
    explicit = create("attention_unet", base=16, depth=2, init="torch")
    conv = he.encoders[1][0]  # 3x3, 16 -> 32 channels: fan_in 144
    expected_std = (2.0 / (1 + 0.01**2) / 144) ** 0.5
    assert abs(float(conv.weight.std()) / expected_std - 1) < 0.05
    assert float(he.head.bias.abs().sum()) == 0.0
    default_std = float(default.encoders[1][0].weight.std())
    assert abs(default_std / (1 / (3 * 144)) ** 0.5 - 1) < 0.05  # kaiming_uniform(a=sqrt(5)): var 1/(3 fan_in)
    for a, b in zip(default.state_dict().values(), explicit.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    zero = create("attention_unet", base=16, depth=2, init="he_zero_head")
    assert float(zero.head.weight.abs().sum()) == 0.0


def test_unet_entry_fixes_attention_off():
    with pytest.raises(InputError, match="attention"):
        create("unet", attention=True)


def test_unknown_timm_encoder_named():
    with pytest.raises(InputError, match="no_such_net"):
        create("timm_unet", encoder="no_such_net")


def test_unreachable_pretrained_weights_name_the_encoder(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("could not reach the hub")
        raise AssertionError("expected a pretrained request")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(InputError, match="resnet18.*pretrained weights could not be loaded"):
        create("timm_unet", encoder="resnet18", pretrained=True)


def test_input_size_must_match_depth():
    model = create("attention_unet", base=4, depth=3)
    with pytest.raises(InputError, match="multiples of 8"):
        model(torch.randn(1, 1, 20, 20))


def test_parameter_counts_grow_with_width_and_gates_add_parameters():
    counts = {b: count_parameters(create("attention_unet", base=b, depth=4)) for b in (8, 16)}
    plain = count_parameters(create("unet", base=16, depth=4))
    # Convolution weights scale with width squared: doubling the base gives about 4x the parameters.
    assert 3.8 < counts[16] / counts[8] < 4.1
    assert plain < counts[16]
    # Hand count of the gates at base 16, depth 4: theta (2w -> w/2, no bias) + BN(w/2) + psi (w/2 -> 1, bias).
    gates = sum(2 * w * (w // 2) + 2 * (w // 2) + (w // 2) + 1 for w in (16, 32, 64, 128))
    assert counts[16] - plain == gates


def test_one_decoder_conv_removes_the_second_conv_of_every_decoder_level():
    """Where our 16 % more FLOPs than MONAI's AttentionUnet come from: the second 3x3 conv (w -> w) of each decoder
    level. Dropping it removes exactly 9 w^2 weights and 2 x 9 w^2 x pixels FLOPs per level."""
    from robustseg.nn.device import forward_flops

    x = torch.zeros(1, 1, 128, 128)
    two, one = create("attention_unet", base=16, depth=4), create("attention_unet", base=16, depth=4, decoder_convs=1)
    assert two.decoder_convs == 2  # the default: the reference study's architecture
    widths = (16, 32, 64, 128)
    assert count_parameters(two) - count_parameters(one) == sum(9 * w * w + 2 * w for w in widths)  # conv + BN
    saved = sum(2 * 9 * w * w * (128 // 2**i) ** 2 for i, w in enumerate(widths))
    assert forward_flops(two, x) - forward_flops(one, x) == saved
    assert 0.79 < forward_flops(one, x) / forward_flops(two, x) < 0.81
    out = one(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 4, 32, 32)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_checkpoints_load_with_their_decoder(tmp_path, dropout):
    """A lean checkpoint loads as lean; one whose config has no ``decoder_convs`` key (written before the option
    existed) loads with two convs per decoder level, the architecture it was trained with."""
    from robustseg.nn.predict import load_model
    from robustseg.nn.train import TrainConfig

    for kw in ({"decoder_convs": 1}, {}):
        model = create("attention_unet", base=4, depth=2, dropout=dropout, **kw).eval()
        cfg = TrainConfig(model_kwargs={"base": 4, "depth": 2, "dropout": dropout, **kw})
        path = tmp_path / f"c{len(kw)}.pt"
        torch.save({"state_dict": model.state_dict(), "config": cfg.to_dict(), "in_channels": 1, "num_classes": 4}, path)
        loaded, _ = load_model(path)
        assert loaded.decoder_convs == kw.get("decoder_convs", 2)
        x = torch.randn(1, 1, 16, 16)
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("norm", ["instance", "group", "none"])
def test_other_norms_run(norm):
    model = create("attention_unet", base=4, depth=2, norm=norm, dropout=0.1)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4, 16, 16)


def test_attention_maps_are_probabilities_at_each_skip_resolution():
    model: AttentionUNet = create("attention_unet", base=4, depth=3).eval()
    maps = model.attention_maps(torch.randn(1, 1, 32, 32))
    assert [m.shape[-1] for m in maps] == [8, 16, 32]
    assert all(((m >= 0) & (m <= 1)).all() for m in maps)


def test_batchnorm_folding_keeps_the_function():
    torch.manual_seed(0)
    model = create("attention_unet", base=4, depth=2)
    model.train()
    for _ in range(3):  # give the BN layers non-trivial running statistics
        model(torch.randn(4, 1, 16, 16) * 2 + 1)
    model.eval()
    x = torch.randn(2, 1, 16, 16)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_bf16_inference_stays_close_to_fp32():
    import numpy as np

    from robustseg.nn.predict import predict_proba

    torch.manual_seed(0)
    model = create("attention_unet", base=4, depth=2)
    model.train()
    for _ in range(3):
        model(torch.randn(4, 1, 16, 16))
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    exact = predict_proba(model.eval(), images, amp="fp32")
    fast = predict_proba(model, images, amp="bf16")
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, atol=1e-5)
    assert 0 < np.abs(fast - exact).max() < 0.05  # bf16 really ran, and stayed close
