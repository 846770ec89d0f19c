"""One training run: seeded data pipeline, Adam, ReduceLROnPlateau, early stopping, best checkpoint.

``train_run`` is the unit every study repeats. On CPU (fp32 or bf16, ``num_workers`` any) two runs with the same
config and arrays produce identical checkpoints and metrics: Python, NumPy and torch are seeded, the
sampler has its own seeded generator, augmentation is seeded per (seed, epoch, index) and torch's
deterministic algorithms are switched on for the duration of the run.
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, ValidationError, field_validator, model_validator
from torch import nn
from torch.utils.data import DataLoader

from robustseg._io import atomic_write
from robustseg.config.load import error_message
from robustseg.config.schema import (
    DataTable,
    LossTable,
    ModelTable,
    SamplerTable,
    TrainTable,
    key_error,
)
from robustseg.data.transforms import make_augment
from robustseg.errors import InputError, RunError
from robustseg.labels import CLASS_NAMES, SMALL_CLASSES
from robustseg.nn import losses, models
from robustseg.nn.dataset import SegDataset
from robustseg.nn.device import (
    forward_flops,
    pin_memory,
    resolve_amp,
    resolve_compile,
    select_device,
    use_channels_last,
)
from robustseg.nn.models.attention_unet import Pointwise
from robustseg.nn.sampler import make_sampler, oversampling_weights

Arrays = tuple[np.ndarray, np.ndarray]
Progress = Callable[[int, int, dict[str, float]], None]


_STUDY_KEYS = {"model": "model.name", "loss": "loss.name", "class_weight_smoothing": "loss.class_weight_smoothing",
               "oversampling": "sampler.oversampling", "size": "data.size", "seed": "seed",
               **{k: f"train.{k}" for k in TrainTable.model_fields}}
"""The study key each ``TrainConfig`` field comes from (named in error messages)."""

LR_SCHEDULES = ("plateau", "poly")
CHECKPOINT_METRICS = ("val_loss", "small_dice")
POLY_EXPONENT = 0.9


class TrainConfig(TrainTable):
    """Everything that changes the result of one run: the ``[train]`` table plus the arm's model, loss and
    sampler, the seed and the input size. Validated by the study schema (``robustseg.config.schema``);
    bad values raise ``InputError``. Defaults: the reference study (the schema's defaults).
    """

    # the arm's other tables and the input size: the schema's fields (bounds and defaults) reused
    model: str = ModelTable.model_fields["name"]
    model_kwargs: dict[str, Any] = {}
    loss: str = LossTable.model_fields["name"]
    loss_kwargs: dict[str, Any] = {}
    class_weight_smoothing: float | int = LossTable.model_fields["class_weight_smoothing"]
    oversampling: float | int = SamplerTable.model_fields["oversampling"]
    seed: Annotated[int, Field(ge=0)] = 0
    size: int = DataTable.model_fields["size"]
    class_names: tuple[str, ...] = CLASS_NAMES
    """Label index -> name (the data set's classes; the fetal four by default)."""
    small_classes: tuple[int, ...] = SMALL_CLASSES
    """Label indices whose images the sampler oversamples (``data.small_structures``)."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InputError(error_message(exc.errors(include_url=False)[0], type(self), data, "", keys=_STUDY_KEYS)) from None

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        if not models.MODELS.has(name):
            raise ValueError(f"one of {', '.join(models.list_models())}, or 'package.module:factory'")
        return name

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        if not losses.LOSSES.has(name):
            raise ValueError(f"one of {', '.join(losses.list_losses())}, or 'package.module:factory'")
        return name

    @model_validator(mode="after")
    def _patch_fits(self) -> TrainConfig:
        if self.patch_size and not 16 <= self.patch_size <= self.size:
            raise key_error("patch_size", self.patch_size, f"0 (whole image) or an integer in [16, data.size={self.size}]")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/TOML-friendly dict of every field."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise InputError naming them.

        Checkpoints written before the schema moved to pydantic stored ``None`` for "one pass per epoch"
        (``samples_per_epoch``) and "no clipping" (``grad_clip``); both are 0 now.
        """
        data = {k: (0 if v is None and k in ("samples_per_epoch", "grad_clip") else v) for k, v in data.items()}
        return cls(**data)


@dataclass(frozen=True)
class TrainResult:
    """What one run produced (the files live in the run folder)."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    seconds: float
    history: pd.DataFrame
    checkpoint: Path
    stopped_early: bool
    val_dice: dict[str, float]
    """Validation Dice per class name (pooled pixels, argmax) of the best checkpoint's epoch."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    """DataLoader worker seeding from torch's per-worker seed (which derives from the loader generator)."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic torch algorithms for the duration of a run; previous setting restored after.

    New tensors are not filled with NaN (``torch.utils.deterministic.fill_uninitialized_memory``, on by default
    with deterministic algorithms): the fills cost ~5 % of a small network's training step on CPU (tens of
    thousands of ``fill_`` calls per epoch) and matter only to a kernel that reads memory it never wrote; the
    determinism tests (two runs, bit-identical checkpoints) would catch one.
    """
    prev, prev_warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    prev_bench = torch.backends.cudnn.benchmark
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill


def _check_arrays(arrays: Arrays, name: str, num_classes: int) -> Arrays:
    try:
        images, masks = arrays
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected a pair (images, masks)") from exc
    images, masks = np.asarray(images), np.asarray(masks)
    if images.dtype != np.uint8 or masks.dtype != np.uint8 or images.ndim != 3 or images.shape != masks.shape:
        raise InputError(
            f"{name}: expected uint8 images and masks of the same shape (N, S, S), "
            f"got {images.dtype}{images.shape} and {masks.dtype}{masks.shape}"
        )
    if len(images) == 0:
        raise InputError(f"{name}: no images")
    if masks.max() >= num_classes:
        raise InputError(f"{name}: mask value {int(masks.max())} out of range 0..{num_classes - 1}")
    return images, masks


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _save_checkpoint(path: Path, model: nn.Module, cfg: TrainConfig, extra: dict[str, Any]) -> None:
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"state_dict": state, "config": cfg.to_dict(), **extra}, buf)
    _atomic_write_bytes(path, buf.getvalue())


def _loader(ds: SegDataset, cfg: TrainConfig, device: torch.device, sampler: Any, seed: int) -> DataLoader:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=cfg.num_workers,
        pin_memory=pin_memory(device),
        worker_init_fn=_worker_init if cfg.num_workers > 0 else None,
        generator=gen,
        drop_last=False,
    )


def poly_lr(base_lr: float, epoch: int, max_epochs: int, exponent: float = POLY_EXPONENT) -> float:
    """nnU-Net's poly schedule: the learning rate of (1-based) ``epoch``, ``base (1 - (e-1)/E) ** exponent``."""
    return float(base_lr) * (1.0 - (int(epoch) - 1) / int(max_epochs)) ** exponent


class _LRSchedule:
    """``before_epoch(e)`` sets the poly rate; ``after_epoch(val_loss)`` steps ReduceLROnPlateau."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: TrainConfig) -> None:
        self.opt, self.cfg = opt, cfg
        self.plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.lr_min
            )
            if cfg.lr_schedule == "plateau"
            else None
        )

    def before_epoch(self, epoch: int) -> None:
        if self.plateau is None:
            for group in self.opt.param_groups:
                group["lr"] = max(poly_lr(self.cfg.lr, epoch, self.cfg.max_epochs), self.cfg.lr_min)

    def after_epoch(self, val_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(val_loss)


class DeepSupervision(nn.Module):
    """Auxiliary heads on a U-Net's decoder levels, fed by forward hooks (the model stays unchanged).

    ``loss(criterion, logits, y)`` is ``sum_k w_k criterion(out_k, y_k)`` over the full-resolution
    logits (k = 0) and ``levels`` coarser decoder outputs, ``w_k ∝ 2**-k`` normalised to sum 1, with
    ``y_k`` the labels downsampled (nearest) to each output's size. Features are captured only while the
    model trains, so validation and prediction see the plain model.
    """

    def __init__(self, model: nn.Module, num_classes: int, levels: int) -> None:
        super().__init__()
        decoders = getattr(model, "decoders", None)
        if not isinstance(decoders, nn.ModuleList) or len(decoders) < levels + 1:
            raise InputError(
                f"train.deep_supervision = {levels}: the model needs at least {levels + 1} decoder levels "
                "(model.decoders)"
            )
        chosen = list(decoders)[-1 - levels : -1][::-1]  # finest first: 1/2, 1/4, ...
        widths = [[m for m in d.modules() if isinstance(m, nn.Conv2d)][-1].out_channels for d in chosen]
        self.heads = nn.ModuleList(Pointwise(w, num_classes) for w in widths)
        self.weights = [2.0**-k for k in range(levels + 1)]
        total = sum(self.weights)
        self.weights = [w / total for w in self.weights]
        self._features: list[torch.Tensor | None] = [None] * levels
        self._hooks = [d.register_forward_hook(self._capture(i)) for i, d in enumerate(chosen)]
        self._model = [model]  # not a submodule: its parameters stay the model's

    def _capture(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            if self._model[0].training:
                self._features[i] = out

        return hook

    def loss(self, criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = self.weights[0] * criterion(logits.float(), y)
        for w, head, feat in zip(self.weights[1:], self.heads, self._features, strict=True):
            if feat is None:
                raise RuntimeError("deep supervision: decoder features were not captured")
            out = head(feat.float())
            total = total + w * criterion(out, _downsample_labels(y, out.shape[-2:]))
        self._features = [None] * len(self._features)
        return total

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def _downsample_labels(y: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Labels ``(N, H, W)`` at ``size`` by nearest neighbour (``interpolate(mode="nearest")``, which picks pixel
    ``floor(i * H / h)``): a strided view when ``H / h`` is a whole number."""
    (h, w), (big_h, big_w) = size, y.shape[-2:]
    if big_h % h == 0 and big_w % w == 0:
        return y[:, :: big_h // h, :: big_w // w]
    return nn.functional.interpolate(y[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()


def _train_loss(criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor, aux: DeepSupervision | None):
    """The training loss of one batch: plain, or with deep supervision."""
    return criterion(logits.float(), y) if aux is None else aux.loss(criterion, logits, y)


def selection_key(metric: str, val_loss: float, dice: np.ndarray,
                  small_classes: tuple[int, ...] = SMALL_CLASSES) -> tuple[float, ...]:
    """Key of an epoch for checkpoint choice and early stopping: larger is better.

    ``val_loss``: ``(-loss,)``; ``small_dice``: ``(mean Dice of the small classes, -loss)`` with classes
    absent from the validation set (NaN Dice) left out, and 0 when all are absent. ``small_classes``: label
    indices of the data set's small structures (``TrainConfig.small_classes``).
    """
    if metric == "val_loss":
        return (-float(val_loss),)
    small = np.asarray(dice, dtype=np.float64)[list(small_classes)]
    small = small[np.isfinite(small)]
    return (float(small.mean()) if small.size else 0.0, -float(val_loss))


def _dice_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class Dice ``2 tp / (2 tp + fp + fn)`` from a (C, C) [true, pred] confusion; NaN if 0/0."""
    tp = np.diag(conf).astype(np.float64)
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)


def train_run(
    cfg: TrainConfig,
    train_arrays: Arrays,
    val_arrays: Arrays,
    out_dir: str | Path,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """Train one model; write ``checkpoint.pt`` (best epoch by ``cfg.checkpoint_metric``) and ``history.csv``.

    Raises RunError when a loss becomes NaN/inf (the last good checkpoint, if any, stays intact).
    """
    num_classes = len(cfg.class_names)
    tr_img, tr_msk = _check_arrays(train_arrays, "train_arrays", num_classes)
    va_img, va_msk = _check_arrays(val_arrays, "val_arrays", num_classes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(cfg.device)
    precision = resolve_amp(cfg.amp, device)
    channels_last = use_channels_last(cfg.channels_last, device)
    with _deterministic():
        return _train(
            cfg,
            (tr_img, tr_msk),
            (va_img, va_msk),
            out,
            device,
            precision,
            channels_last,
            num_classes,
            progress,
        )


def _train(cfg, train, val, out, device, precision, channels_last, num_classes, progress) -> TrainResult:
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    tr_img, tr_msk = train
    va_img, va_msk = val

    counts = np.bincount(tr_msk.ravel(), minlength=num_classes)
    class_weights = losses.class_weights_from_counts(counts, cfg.class_weight_smoothing)
    loss_kw = dict(cfg.loss_kwargs)
    if losses.uses_class_weights(cfg.loss) and "class_weights" not in loss_kw:
        loss_kw["class_weights"] = class_weights.tolist()
    criterion = losses.create(cfg.loss, **loss_kw).to(device)

    model = models.create(cfg.model, in_channels=1, num_classes=num_classes, **cfg.model_kwargs).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    aux = DeepSupervision(model, num_classes, cfg.deep_supervision).to(device) if cfg.deep_supervision else None
    params = list(model.parameters()) + (list(aux.parameters()) if aux is not None else [])
    fwd = _compiled(model, cfg, device, cfg.samples_per_epoch or len(tr_img), tr_img.shape[-2:])
    # The fused Adam kernel (CPU and CUDA): one call per step instead of a Python loop over parameters.
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    sched = _LRSchedule(opt, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)

    has_small = np.isin(tr_msk, cfg.small_classes).reshape(len(tr_msk), -1).any(axis=1)
    sampler = make_sampler(
        oversampling_weights(has_small, cfg.oversampling),
        cfg.samples_per_epoch or len(tr_img),
        seed=cfg.seed,
    )
    train_ds = SegDataset(
        tr_img,
        tr_msk,
        make_augment() if cfg.augment else None,
        seed=cfg.seed,
        patch=cfg.patch_size or None,
        fg_fraction=cfg.foreground_fraction,
        fg_classes=cfg.small_classes,
    )
    val_ds = SegDataset(va_img, va_msk, None, seed=cfg.seed)
    train_dl = _loader(train_ds, cfg, device, sampler, cfg.seed)
    val_dl = _loader(val_ds, cfg, device, None, cfg.seed + 1)

    def to_dev(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(device, non_blocking=True)

    params = [p for p in params if p.requires_grad]  # the model's and the deep-supervision heads'
    ckpt_path = out / "checkpoint.pt"
    rows: list[dict[str, float]] = []
    best_loss, best_epoch, best_dice = math.inf, 0, np.full(num_classes, np.nan)
    best_key: tuple[float, ...] = (-math.inf,)
    wait, stopped_early, epoch = 0, False, 0
    for epoch in range(1, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        train_ds.set_epoch(epoch)
        sched.before_epoch(epoch)
        model.train()
        loss_sum, n_seen = torch.zeros((), dtype=torch.float64, device=device), 0
        for step, (x, y) in enumerate(train_dl, start=1):
            x, y = to_dev(x, y)
            opt.zero_grad(set_to_none=True)
            with precision.autocast():
                logits = fwd(x)
            loss = _train_loss(criterion, logits, y, aux)
            if not torch.isfinite(loss):
                raise RunError(f"non-finite training loss ({loss.item()}) at epoch {epoch}, step {step}")
            if precision.use_grad_scaler:
                scaler.scale(loss).backward()
                if cfg.grad_clip > 0:  # 0: no clipping
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                opt.step()
            loss_sum += loss.detach().double() * len(x)
            n_seen += len(x)
        train_loss = float(loss_sum) / max(n_seen, 1)

        val_loss, dice = _validate(fwd, criterion, val_dl, to_dev, precision, num_classes)
        if not math.isfinite(val_loss):
            raise RunError(f"non-finite validation loss ({val_loss}) at epoch {epoch}")
        lr = opt.param_groups[0]["lr"]
        sched.after_epoch(val_loss)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr}
        row.update({f"val_dice_{c}": float(d) for c, d in zip(cfg.class_names, dice, strict=True)})
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)

        key = selection_key(cfg.checkpoint_metric, val_loss, dice, cfg.small_classes)
        if key > best_key:
            best_key, best_loss, best_epoch, best_dice, wait = key, val_loss, epoch, dice, 0
            _save_checkpoint(
                ckpt_path,
                model,
                cfg,
                {
                    "in_channels": 1,
                    "num_classes": num_classes,
                    "class_names": list(cfg.class_names),
                    "epoch": epoch,
                    "val_loss": val_loss,
                    "class_weights": class_weights.tolist(),
                },
            )
        else:
            wait += 1
        _atomic_write_bytes(out / "history.csv", pd.DataFrame(rows).to_csv(index=False).encode())
        if progress is not None:
            progress(epoch, cfg.max_epochs, dict(row))
        if wait >= cfg.early_stopping_patience > 0:
            stopped_early = True
            break

    return TrainResult(
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        epochs_run=epoch,
        seconds=time.perf_counter() - t_start,
        history=pd.DataFrame(rows),
        checkpoint=ckpt_path,
        stopped_early=stopped_early,
        val_dice={c: float(d) for c, d in zip(cfg.class_names, best_dice, strict=True)},
    )


def _compiled(model: nn.Module, cfg: TrainConfig, device: torch.device, per_epoch: int, hw) -> Any:
    """``torch.compile(model)`` when ``cfg.compile`` resolves to on, else the model itself.

    ``auto`` estimates the run's work as 3 x forward FLOPs x images per epoch x max_epochs (an upper
    bound: early stopping ends most runs sooner) and compiles above the device's measured break-even.
    The compile cache lives where ``TORCHINDUCTOR_CACHE_DIR`` points (the study sets the runs folder).
    """
    tflop = None
    if cfg.compile == "auto":
        x = torch.zeros(1, 1, *hw, device=device)
        tflop = 3 * forward_flops(model, x) * per_epoch * cfg.max_epochs / 1e12
    if not resolve_compile(cfg.compile, device, tflop):
        return model
    # One graph per batch shape (a full and a last partial batch, train and eval): no dynamic shapes.
    return torch.compile(model, dynamic=False)


def _validate(model, criterion, loader, to_dev, precision, num_classes) -> tuple[float, np.ndarray]:
    """Mean validation loss (per image) and pooled per-class Dice of argmax predictions.

    ``model`` is the model or its ``torch.compile`` wrapper (``eval()`` reaches the model through it).
    """
    model.eval()
    loss_sum, n = 0.0, 0
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    with torch.inference_mode():
        for x, y in loader:
            x, y = to_dev(x, y)
            with precision.autocast():
                logits = model(x)
            logits = logits.float()
            loss_sum += float(criterion(logits, y)) * len(x)
            n += len(x)
            pred = logits.argmax(1)
            conf += torch.bincount((y * num_classes + pred).flatten(), minlength=num_classes**2).cpu()
    return loss_sum / max(n, 1), _dice_from_confusion(conf.view(num_classes, num_classes).numpy())
