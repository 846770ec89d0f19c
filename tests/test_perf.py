"""Performance settings: bf16 detection, amp/compile resolution, FLOP counting, worker environment, CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import robustseg.nn.device as device_mod
import robustseg.nn.train as train_mod
from robustseg.errors import InputError
from robustseg.nn.dataset import load_arrays
from robustseg.nn.device import forward_flops, resolve_amp, resolve_compile
from robustseg.nn.train import TrainConfig, train_run
from robustseg.pipeline import workerenv

TINY = {"model_kwargs": {"base": 4, "depth": 2}, "batch_size": 8, "max_epochs": 1, "lr": 3e-3}
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def arrays(phantom_index):
    images, masks = load_arrays(phantom_index, 32)
    return (images[:16], masks[:16]), (images[16:24], masks[16:24])


@pytest.fixture
def caps(monkeypatch):
    """Pretend CPU: ``caps(onednn=bool, **flags)`` sets oneDNN's answer and the CPU flags."""

    def set_caps(onednn: bool = True, **flags: object) -> None:
        monkeypatch.setattr(device_mod, "_onednn_bf16", lambda: onednn)
        monkeypatch.setattr(device_mod, "_cpu_capabilities", lambda: {"architecture": "x86_64", **flags})
        device_mod.cpu_supports_bf16.cache_clear()

    yield set_caps
    device_mod.cpu_supports_bf16.cache_clear()


def test_native_bf16_needs_the_cpu_flag_not_only_onednn(caps):
    caps(onednn=True, avx512_bf16=False, amx_bf16=False)  # plain AVX-512: oneDNN emulates bf16 (slow)
    assert not device_mod.cpu_supports_bf16()
    caps(onednn=True, avx512_bf16=True)
    assert device_mod.cpu_supports_bf16()
    caps(onednn=True, amx_bf16=True)
    assert device_mod.cpu_supports_bf16()
    caps(onednn=False, avx512_bf16=True)
    assert not device_mod.cpu_supports_bf16()


def test_amp_auto_on_cpu_follows_native_bf16_and_fp32_is_one_setting_away(caps, monkeypatch):
    cpu = torch.device("cpu")
    caps(avx512_bf16=True)
    assert resolve_amp("auto", cpu).dtype is None  # the shipped default: CPU training stays fp32
    monkeypatch.setattr(device_mod, "CPU_TRAIN_BF16_AUTO", True)
    assert resolve_amp("auto", cpu).dtype == torch.bfloat16
    assert resolve_amp("fp32", cpu).dtype is None and resolve_amp("off", cpu).dtype is None
    caps(avx512_bf16=False)
    assert resolve_amp("auto", cpu).dtype is None
    assert resolve_amp("bf16", cpu).dtype == torch.bfloat16  # forced: emulated but allowed
    with pytest.raises(InputError, match="amp='half'"):
        resolve_amp("half", cpu)


def test_inference_may_use_bf16_when_training_stays_fp32(caps, monkeypatch):
    cpu = torch.device("cpu")
    caps(avx512_bf16=True)
    monkeypatch.setattr(device_mod, "CPU_TRAIN_BF16_AUTO", False)
    assert resolve_amp("auto", cpu).dtype is None
    assert resolve_amp("auto", cpu, inference=True).dtype == torch.bfloat16
    assert resolve_amp("fp32", cpu, inference=True).dtype is None


def test_compile_resolution(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setitem(device_mod.COMPILE_BREAK_EVEN_TFLOP, "cpu", 10.0)
    assert resolve_compile("on", cpu) and not resolve_compile("off", cpu, 1e9)
    assert not resolve_compile("auto", cpu, 9.9) and resolve_compile("auto", cpu, 10.0)
    assert not resolve_compile("auto", torch.device("cuda"), 1e9)  # not measured on CUDA: stays off
    with pytest.raises(InputError, match="compile='yes'"):
        resolve_compile("yes", cpu)
    with pytest.raises(InputError, match="train.compile"):
        TrainConfig(compile="yes")


def test_forward_flops_hand_count():
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ConvTranspose2d(4, 2, 2, stride=2))
    # conv: 2 x (4 x 8 x 8 outputs) x (3 x 3 x 1); transposed: 2 x (4 x 8 x 8 inputs) x (2 x 2 x 2)
    assert forward_flops(conv, torch.zeros(1, 1, 8, 8)) == 2 * 256 * 9 + 2 * 256 * 8
    assert conv.training  # mode restored


def test_compile_auto_estimates_the_run_and_wraps_the_model(arrays, tmp_path, monkeypatch):
    seen = {}

    def fake_resolve(setting, device, tflop=None):
        seen["tflop"] = tflop
        return True

    def fake_compile(model, **kw):
        seen["kw"] = kw
        return model

    monkeypatch.setattr(train_mod, "resolve_compile", fake_resolve)
    monkeypatch.setattr(torch, "compile", fake_compile)
    res = train_run(TrainConfig(**TINY), *arrays, tmp_path)
    model = train_mod.models.create("attention_unet", in_channels=1, num_classes=4, base=4, depth=2)
    expected = 3 * forward_flops(model, torch.zeros(1, 1, 32, 32)) * 16 * 1 / 1e12
    assert seen["tflop"] == pytest.approx(expected) and seen["kw"] == {"dynamic": False}
    assert res.checkpoint.is_file()


def test_bf16_training_is_bit_reproducible(arrays, tmp_path):
    cfg = TrainConfig(**TINY, amp="bf16", seed=1)
    a = train_run(cfg, *arrays, tmp_path / "a")
    b = train_run(cfg, *arrays, tmp_path / "b")
    assert a.checkpoint.read_bytes() == b.checkpoint.read_bytes()
    c = train_run(TrainConfig(**TINY, amp="fp32", seed=1), *arrays, tmp_path / "c")
    assert a.checkpoint.read_bytes() != c.checkpoint.read_bytes()  # bf16 really changed the arithmetic


@pytest.mark.slow
def test_compiled_training_runs_and_saves_plain_state_dict(arrays, tmp_path, monkeypatch):
    import functools

    # Dynamo tracing and AOT autograd for real; Inductor's code generation (minutes on a busy 2-core
    # machine) is swapped for the eager backend. benchmarks/bench_models.py --compile runs Inductor.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    res = train_run(TrainConfig(**TINY, compile="on", amp="fp32"), *arrays, tmp_path)
    state = torch.load(res.checkpoint, weights_only=True)["state_dict"]
    assert not any(k.startswith("_orig_mod") for k in state)
    assert np.isfinite(res.best_val_loss)


def test_worker_env_keeps_user_choices_and_is_restored(tmp_path, monkeypatch):
    for key in workerenv.compile_cache_env(tmp_path):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/mine")
    env = workerenv.worker_env(tmp_path)
    assert "TORCHINDUCTOR_CACHE_DIR" not in env
    assert env["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    assert Path(env["TRITON_CACHE_DIR"]).parent == (tmp_path / ".compile-cache").resolve()
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with workerenv.worker_environment(tmp_path, size=256) as added:
        assert all(os.environ[k] == v for k, v in added.items())
    assert not any(k in os.environ for k in added if k != "TORCHINDUCTOR_CACHE_DIR")
    with workerenv.compile_cache(tmp_path) as set_here:
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/mine" and "TORCHINDUCTOR_CACHE_DIR" not in set_here
        assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
    assert "TORCHINDUCTOR_FX_GRAPH_CACHE" not in os.environ


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux-only")
def test_malloc_tunables_reach_a_spawned_process(tmp_path):
    env = {**os.environ, **workerenv.worker_env(tmp_path, size=256)}
    if "GLIBC_TUNABLES" not in env:
        pytest.skip("not glibc")
    out = subprocess.run([sys.executable, "-c", "import os; print(os.environ['GLIBC_TUNABLES'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert "glibc.malloc.mmap_max=0" in out.stdout
    assert workerenv.tune_malloc_in_process()


def test_gpu_check_exits_cleanly_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: run benchmarks/gpu_check.py itself")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and "no CUDA device" in out.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_check_runs_its_study_and_timings_as_a_cpu_self_test():
    """The GPU check's code path (tiny study end to end, report, timed steps vs MONAI) at toy sizes on the CPU."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--once",
                          "--base", "4", "--size", "32", "--batch", "2", "--steps", "1", "--rounds", "1"],
                         capture_output=True, text=True, timeout=850, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CPU self-test" in out.stdout
    assert "[1] study on CPU (self-test): 2 runs complete, report written: True, device cpu" in out.stdout
    for variant in ("monai fp32", "monai amp + channels-last", "ours fp32", "ours amp + channels-last"):
        assert f"\n{variant} " in out.stdout
    assert "gpu_check: all checks passed" in out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_and_prediction(arrays, tmp_path):
    from robustseg.nn.predict import load_model, predict_proba

    res = train_run(TrainConfig(**TINY, device="cuda"), *arrays, tmp_path)
    model, _ = load_model(res.checkpoint, "cuda")
    proba = predict_proba(model, arrays[1][0], batch_size=4)
    assert proba.shape == (8, 4, 32, 32) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-3)
