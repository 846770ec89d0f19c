"""The study file schema: one frozen pydantic model per table, the only place keys, defaults and bounds live.

Every table is closed (``extra="forbid"``) except ``[model]`` and ``[loss]``, whose extra keys are the
keyword options of the chosen registry entry (checked by that registry when the arm is built).
Values are strict: an integer key takes an integer, a number key takes an integer or a float (kept as
written, so run ids do not depend on ``1`` vs ``1.0`` being normalised), booleans only ``true`` / ``false``.
Non-finite numbers are rejected everywhere.

Bounds that two parts of the package share (oversampling, learning rate) are constants here, so the study
file, training and tuning cannot drift apart again:

- ``train.lr`` > 0: Adam with lr = 0 never moves.
- ``train.lr_factor`` in (0, 1): ReduceLROnPlateau needs factor < 1, and 0 would drop to ``lr_min`` at once.
- ``sampler.oversampling`` in [1, 1000]: the sampling weight of images that contain CSP or LV relative to
  the others; 1 means no oversampling. Values below 1 would *under*-sample the images holding the small
  structures, the opposite of what the option is for, and are rejected (the tuning range has the same floor).
- ``train.grad_clip`` >= 0: the maximum gradient norm; 0 switches clipping off (TOML has no ``none``).
- ``train.samples_per_epoch`` >= 0: images drawn per epoch; 0 means one pass (the training set's size).
"""

import os
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from robustseg.labels import CLASS_NAMES

OVERSAMPLING_MIN, OVERSAMPLING_MAX = 1.0, 1000.0
"""Sampling weight of images with CSP / LV (1: no oversampling); shared by the schema, sampler and tuning."""
TUNE_LR_MAX = 10.0

_CLOSED = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
_OPEN = ConfigDict(extra="allow", frozen=True, strict=True, allow_inf_nan=False)


def key_error(key: str, value: Any, expected: str) -> PydanticCustomError:
    """An error about ``key`` (relative to the table being validated) that the message adapter reports as is."""
    return PydanticCustomError("study_key", "{expected}", {"key": key, "value": value, "expected": expected})


def distinct(values: list[Any]) -> list[Any]:
    """No repeated entries (reported with the list's own description)."""
    if len(set(values)) != len(values):
        raise PydanticCustomError("not_distinct", "repeated entries")
    return values


Number = float | int
"""A finite number: an integer or a float, kept as written."""


def int_list(lo: int) -> Any:
    """A non-empty list of distinct integers >= ``lo``."""
    return Annotated[list[Annotated[int, Field(ge=lo)]], Field(min_length=1), AfterValidator(distinct)]


def class_list() -> Any:
    """A non-empty list of distinct class names (checked against the data set's classes: the fetal ones at load,
    an nnU-Net data set's when its dataset.json is read)."""
    return Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, json_schema_extra={
        "expected": "a non-empty list of distinct class names"}), AfterValidator(distinct)]


Colormap = Annotated[str | dict[str, Any], Field(json_schema_extra={"expected": "a colormap name or a table"})]


def expand_user(value: str) -> str:
    """``~`` / ``~user`` at the start of a path setting expanded to the home folder (as a shell would)."""
    return os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value


def expand_storage(value: str) -> str:
    """An Optuna storage URL whose file path starts with ``~`` (``sqlite:///~/t.db``, ``journal://~/t.log``)."""
    for scheme in ("sqlite:///", "journal://"):
        if isinstance(value, str) and value.startswith(scheme + "~"):
            return scheme + os.path.expanduser(value[len(scheme):])
    return value


UserPath = Annotated[str, AfterValidator(expand_user)]
"""A path setting: ``~`` is expanded, in the study file and in ``--set`` alike."""


class Table(BaseModel):
    """A closed table: unknown keys are errors."""

    model_config = _CLOSED


Frame = Annotated[int, Field(ge=1, json_schema_extra={"expected": "a frame number, 1 or more (DICOM numbering)"})]
"""``data.frame``: the frame read from each multi-frame image (a DICOM cine loop, a multi-page TIFF; 1 = the first).
Single-frame images are read as they are."""


def _frame_needs_dicom(table: Any) -> Any:
    if table.frame is not None and table.source == "phantom":
        raise key_error("frame", table.frame, "no frame: the phantom's images have one frame each")
    return table


class ExternalTable(Table):
    """``[data.external.NAME]``: an extra test set, scored next to the held-out test set (never trained on)."""

    source: Literal["fetal_head", "folder", "dicom"] = "folder"
    path: Annotated[UserPath, Field(min_length=1, json_schema_extra={"expected": "a folder (required)"})]
    plane: str = "Trans-thalamic"
    colormap: Colormap = "pascal"
    frame: Frame | None = None

    @model_validator(mode="after")
    def _frame_source(self) -> Self:
        return _frame_needs_dicom(self)


class DataTable(Table):
    source: Literal["phantom", "fetal_head", "folder", "nnunet", "dicom"] = "phantom"
    path: UserPath = ""
    plane: str = "Trans-thalamic"
    colormap: Colormap = "pascal"
    size: Annotated[int, Field(ge=16, le=4096)] = 256
    phantom_n: Annotated[int, Field(ge=10, le=100000)] = 200
    phantom_seed: Annotated[int, Field(ge=0)] = 0
    phantom_style: str = "default"
    """A named phantom variant (``robustseg.data.phantom.STYLES``), checked when the phantom is generated."""
    small_structures: Annotated[list[str], Field(min_length=1, json_schema_extra={
        "expected": "a non-empty list of distinct class names"})] = ["csp", "lv"]
    """The classes that count as small structures (oversampling, split strata, collapse flags, QC)."""
    external: dict[str, ExternalTable] = {}
    frame: Frame | None = None
    """The frame (1-based) read from each multi-frame image (DICOM cine, multi-page TIFF); required when the data set
    has any: robustseg never picks a frame silently."""
    allow_absent_classes: bool = False
    """Run a study although a foreground class appears in no mask of the data set (or every mask is empty);
    without it that is an error before any training (usually a wrong colour map)."""

    @model_validator(mode="after")
    def _frame_source(self) -> Self:
        return _frame_needs_dicom(self)

    @model_validator(mode="after")
    def _distinct_small(self) -> Self:
        if len(set(self.small_structures)) != len(self.small_structures) or not all(self.small_structures):
            raise key_error("small_structures", self.small_structures, "a non-empty list of distinct class names")
        return self


class SplitTable(Table):
    test_fraction: Annotated[Number, Field(ge=0.01, le=0.9)] = 0.2
    k_folds: Annotated[int, Field(ge=2, le=50)] = 5
    folds: Annotated[list[int], Field(json_schema_extra={"expected": "a list of distinct fold numbers"})] = []
    """Folds to run (empty: all ``k_folds``)."""
    seed: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _folds_in_range(self) -> Self:
        k = self.k_folds
        if any(not 0 <= f < k for f in self.folds) or len(set(self.folds)) != len(self.folds):
            raise key_error("folds", self.folds, f"a list of distinct fold numbers in [0, {k - 1}]")
        return self


class ModelTable(BaseModel):
    """``[model]``: the registry entry and its own options (extra keys, checked by the model registry)."""

    model_config = _OPEN
    name: str = "attention_unet"


class LossTable(BaseModel):
    """``[loss]``: the registry entry, class-weight smoothing, and the loss's own options (extra keys)."""

    model_config = _OPEN
    name: str = "hybrid"
    class_weight_smoothing: Annotated[Number, Field(ge=0)] = 0.0


class SamplerTable(Table):
    oversampling: Annotated[Number, Field(ge=OVERSAMPLING_MIN, le=OVERSAMPLING_MAX)] = 3.0


class TrainTable(Table):
    """``[train]``: what one training run consumes (``robustseg.nn.train.TrainConfig`` extends this model)."""

    batch_size: Annotated[int, Field(ge=1, le=4096)] = 8
    max_epochs: Annotated[int, Field(ge=1, le=100000)] = 100
    lr: Annotated[Number, Field(gt=0)] = 1e-4
    weight_decay: Annotated[Number, Field(ge=0)] = 0.0
    lr_factor: Annotated[Number, Field(gt=0, lt=1)] = 0.5
    lr_patience: Annotated[int, Field(ge=0)] = 5
    lr_min: Annotated[Number, Field(ge=0)] = 1e-6
    early_stopping_patience: Annotated[int, Field(ge=0)] = 10
    """Epochs without a better validation loss before stopping; 0: never stop early."""
    grad_clip: Annotated[Number, Field(ge=0)] = 1.0
    """Maximum gradient norm; 0: no clipping."""
    amp: Literal["auto", "off", "fp32", "bf16", "fp16"] = "auto"
    """Mixed precision: auto (CPU: fp32 training, bf16 inference where the CPU has native bf16; CUDA:
    bf16 or fp16), off / fp32, bf16, fp16."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
    augment: bool = True
    samples_per_epoch: Annotated[int, Field(ge=0)] = 0
    """Images drawn per epoch; 0: one pass (the size of the training set)."""
    channels_last: Literal["auto"] | bool = "auto"
    compile: Literal["auto", "off", "on"] = "auto"
    """torch.compile the model (cache in the runs folder); auto: on only where measured to pay back."""
    patch_size: Annotated[int, Field(ge=0)] = 0
    """Train on ``patch_size`` crops of the inputs (0: whole images; else 16..data.size)."""
    foreground_fraction: Annotated[Number, Field(ge=0, le=1)] = 0.0
    """Share of training crops centred on a small-structure pixel (nnU-Net: 1/3); needs ``patch_size``."""
    lr_schedule: Literal["plateau", "poly"] = "plateau"
    """``plateau`` (ReduceLROnPlateau on the validation loss) or ``poly`` (lr (1 - e / max_epochs) ** 0.9)."""
    deep_supervision: Annotated[int, Field(ge=0, le=4)] = 0
    """Extra heads on the last N decoder levels below full resolution (0: off)."""
    checkpoint_metric: Literal["val_loss", "small_dice"] = "val_loss"
    """Which epoch to keep and early-stop on: lowest validation loss, or highest small-structure Dice."""

    @model_validator(mode="after")
    def _lr_min_below_lr(self) -> Self:
        if self.lr_min > self.lr:
            raise key_error("lr_min", self.lr_min, f"a number in [0, lr] (lr = {self.lr!r})")
        return self


class PerturbTable(Table):
    suite: Annotated[str | list[Any] | dict[str, Any], Field(
        json_schema_extra={"expected": "a suite or perturbation name, a list of names / [name, severity] pairs, "
                                       "or a table name -> severities"})] = "ultrasound"
    severities: int_list(1) = [1, 2, 3, 4, 5]
    seed: Annotated[int, Field(ge=0)] = 0
    stage: Literal["native", "model"] = "native"
    """Where test images are perturbed: at native resolution, then preprocessed exactly like the clean image
    (``native``, as a scanner makes its artefacts), or the network's letterboxed input (``model``)."""
    geometry: Literal["auto", "sector", "linear"] = "auto"
    """Probe geometry of the beam-based artefacts: estimated per image (``auto``), or forced to a kind."""
    apex: Annotated[list[Number], Field(max_length=2, json_schema_extra={
        "expected": "[row, col] of the fan apex in native pixels (the row may be negative: above the image), or [] "
                    "(estimated)"})] = []
    opening_deg: Annotated[Number, Field(ge=0, le=160)] = 0
    """Full opening angle of the fan (symmetric about the vertical through the apex); 0: estimated."""
    geometry_column: Annotated[str, Field(min_length=1)] = "probe_geometry"
    """Column of the data set's meta.csv that may give each image's geometry (``ProbeGeometry.to_text`` form)."""

    @model_validator(mode="after")
    def _sector_only(self) -> Self:
        if len(self.apex) not in (0, 2):
            raise key_error("apex", self.apex, "[row, col] of the fan apex in native pixels, or [] (estimated)")
        if self.geometry == "linear" and (self.apex or self.opening_deg):
            raise key_error("apex", self.apex, "no apex / opening_deg with geometry = 'linear'")
        return self


class EvalTable(Table):
    empty_policy: Literal["nan", "one"] = "nan"
    postprocess: Literal["auto", "on", "off"] = "auto"
    min_component_px: Annotated[int, Field(ge=0)] = 5
    nsd_tolerance_mm: Annotated[Number, Field(ge=0)] = 1.0
    boundary: bool = True
    save_probabilities: bool = True
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 16
    resolution: Literal["native", "model"] = "native"
    """Where predictions are scored: each image's native size and pixel size, or the network's input size."""


class SlurmTable(Table):
    """``[execution.slurm]``: the SLURM jobs that ``robustseg study --cluster slurm`` (or ``executor = "slurm"``)
    submits through dask-jobqueue's ``SLURMCluster``; each job is one Dask worker that executes runs."""

    partition: str = ""
    """``#SBATCH -p`` (empty: the cluster's default partition)."""
    account: str = ""
    qos: str = ""
    jobs: Annotated[int, Field(ge=1, le=10000)] = 1
    """SLURM jobs (Dask workers) kept running while runs are pending."""
    runs_per_job: Annotated[int, Field(ge=1, le=256)] = 1
    """Runs one job executes side by side (the worker's threads)."""
    cpus_per_job: Annotated[int, Field(ge=1, le=1024)] = 4
    gpus_per_job: Annotated[int, Field(ge=0, le=64)] = 0
    """``#SBATCH --gres=gpu:N`` (0: none)."""
    memory: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B?)$", json_schema_extra={
        "expected": "a memory size such as '16GB' or '500MB'"})] = "16GB"
    walltime: Annotated[str, Field(pattern=r"^([0-9]+-)?[0-9]{1,3}:[0-5][0-9](:[0-5][0-9])?$", json_schema_extra={
        "expected": "a SLURM time limit such as '04:00:00' or '1-00:00:00'"})] = "04:00:00"
    python: str = ""
    """Python interpreter on the compute nodes (empty: this one); robustseg must be installed for it."""
    job_script_prologue: list[str] = []
    """Shell lines run before the worker starts (``module load cuda``, ``source venv/bin/activate``)."""
    job_extra_directives: list[str] = []
    """More ``#SBATCH`` options, e.g. ``["--constraint=a100"]``."""
    interface: str = ""
    """Network interface of the scheduler and the workers (e.g. ``ib0``; ``lo`` on a single machine)."""
    log_directory: str = ""
    """Folder of the jobs' stdout/stderr (empty: ``<runs_dir>/<study>/slurm-logs``)."""
    local_directory: str = ""
    """Workers' scratch folder (empty: Dask's default)."""


class ExecutionTable(Table):
    """``[execution]``: where and how runs execute, and where progress is recorded. Nothing here changes a
    result, so none of it enters the run id."""

    executor: Literal["local", "dask", "slurm"] = "local"
    """``local`` (this process, or ``workers`` local processes), ``dask`` (``scheduler``), ``slurm``
    (``[execution.slurm]``; the same as ``robustseg study --cluster slurm``)."""
    scheduler: str = ""
    threads: Annotated[int, Field(ge=0, le=256)] = 0
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    runs_dir: UserPath = "runs"
    reports_dir: UserPath = "reports"
    bootstrap: Annotated[int, Field(ge=0, le=1000000)] = 2000
    tracking: Literal["none", "mlflow", "tensorboard"] = "none"
    """Experiment tracking of every run (parameters, epochs, final per-class metrics) and of the report;
    needs the extra of the same name (``robustseg.track``)."""
    tracking_uri: str = ""
    """MLflow: a tracking URI (empty: MLflow's default, ``MLFLOW_TRACKING_URI`` or the working directory's
    store); TensorBoard: the log folder (empty: ``<runs_dir>/<study>/tensorboard``)."""
    tracking_experiment: str = ""
    """MLflow experiment name (empty: the study's name)."""
    slurm: SlurmTable = SlurmTable()


class CompareTable(Table):
    """``[compare]``: how the report turns arm comparisons into decisions."""

    margin: Annotated[float, Field(gt=0, le=0.5)] = 0.01
    """Equivalence margin in Dice: a difference within +/- margin is no difference that matters (TOST)."""


# --- [tune] ---------------------------------------------------------------------------------------

RANGE_LIMITS: dict[str, tuple[float, float, bool]] = {
    "a": (0.0, 1.0, False),
    "b": (0.0, 1.0, False),
    "oversampling": (OVERSAMPLING_MIN, OVERSAMPLING_MAX, True),
    "gamma": (0.0, 20.0, False),
    "lr": (0.0, TUNE_LR_MAX, True),
}
"""Tunable key -> (low, high, log scale). Log-scale ranges need low > 0; the others low >= their floor."""


def _range(key: str) -> Any:
    lo, hi, log = RANGE_LIMITS[key]
    lo_text = f"> {lo:g}" if log and lo == 0 else f">= {lo:g}"
    expected = f"a number or a range [low, high] with low <= high, values {lo_text} and <= {hi:g}"

    def check(value: Number | list[Number]) -> Number | list[Number]:
        pair = value if isinstance(value, list) else [value, value]
        ok = len(pair) == 2 and pair[0] <= pair[1] and pair[0] >= lo and pair[1] <= hi and (not log or pair[0] > 0)
        if not ok:
            raise ValueError(expected)
        return value

    return Annotated[Number | list[Number], AfterValidator(check), Field(json_schema_extra={"expected": expected})]


class TuneTable(Table):
    """``[tune]``: Optuna options and the search space (see ``robustseg.tune.space`` for how it is sampled)."""

    trials: Annotated[int, Field(ge=1)] = 20
    timeout: Annotated[Number, Field(ge=0)] = 0.0
    """Seconds per call; 0: none."""
    seed: Annotated[int, Field(ge=0)] = 0
    mode: Literal["single", "multi"] = "single"
    pruner: Literal["", "median", "hyperband", "none"] = ""
    """Empty: ``median`` in single mode, ``none`` in multi mode."""
    pruner_startup_trials: Annotated[int, Field(ge=0)] = 5
    pruner_warmup_epochs: Annotated[int, Field(ge=0)] = 0
    startup_trials: Annotated[int, Field(ge=1)] = 10
    storage: Annotated[str, AfterValidator(expand_storage)] = ""
    study_name: str = ""
    arm: str = ""
    heartbeat_interval: Annotated[int, Field(ge=1)] = 60
    grace_period: Annotated[int, Field(ge=0)] = 0
    retry_killed: Annotated[int, Field(ge=0)] = 0
    max_consecutive_failures: Annotated[int, Field(ge=1)] = 5
    keep_checkpoints: bool = False
    seeds_per_trial: Annotated[int, Field(ge=1)] = 1
    """Train seeds per trial; the objective (and what the pruner sees) is their mean so far."""
    confirm_top_k: Annotated[int, Field(ge=0)] = 3
    """Top trials re-trained with fresh seeds after the search; 0: no confirmation, nothing adopted."""
    confirm_seeds: Annotated[int, Field(ge=2)] = 5
    """Fresh seeds per confirmed trial (and for the current settings)."""
    confirm_alpha: Annotated[Number, Field(gt=0, lt=1)] = 0.05
    """Holm-corrected level at which a confirmed trial must beat the current settings to be adopted."""
    classes: class_list() | None = None
    """Classes the objective averages; unset: the data set's small structures (``data.small_structures``)."""
    parenchyma_classes: class_list() | None = None
    """The second objective's classes (``mode = "multi"``); unset: the other foreground classes (fetal: brain)."""
    folds: int_list(0) = [0]
    a: _range("a") = [0.0, 1.0]
    b: _range("b") = [0.0, 1.0]
    oversampling: _range("oversampling") = [1.0, 10.0]
    gamma: _range("gamma") | None = None
    lr: _range("lr") | None = None

    @property
    def pruner_name(self) -> str:
        return self.pruner or ("median" if self.mode == "single" else "none")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.mode == "multi" and self.pruner_name != "none":
            raise key_error("pruner", self.pruner,
                            "'none' with mode = 'multi' (Optuna cannot prune multi-objective trials)")
        a_high = self.a[1] if isinstance(self.a, list) else self.a
        b_low = self.b[0] if isinstance(self.b, list) else self.b
        if a_high + b_low > 1.0:
            raise key_error("a", self.a, f"a range with a_high + b_low <= 1 (tune.b = {self.b!r}; the hybrid loss "
                                         "needs a + b <= 1)")
        return self


# --- arms and the whole file ----------------------------------------------------------------------


class ArmTables(Table):
    """``[arms.NAME]``: overrides of the arm tables, merged over the study's before validation."""

    model: dict[str, Any] = {}
    loss: dict[str, Any] = {}
    sampler: dict[str, Any] = {}
    train: dict[str, Any] = {}


ARM_TABLES = ("model", "loss", "sampler", "train")
ARM_MODELS: dict[str, type[BaseModel]] = {"model": ModelTable, "loss": LossTable, "sampler": SamplerTable,
                                          "train": TrainTable}


class StudyConfig(Table):
    """A whole study file (defaults + file + ``--set`` overrides)."""

    name: str = ""
    description: str = ""
    seeds: int_list(0) = [0, 1, 2]
    data: DataTable = DataTable()
    split: SplitTable = SplitTable()
    model: ModelTable = ModelTable()
    loss: LossTable = LossTable()
    sampler: SamplerTable = SamplerTable()
    train: TrainTable = TrainTable()
    perturb: PerturbTable = PerturbTable()
    eval: EvalTable = EvalTable()
    execution: ExecutionTable = ExecutionTable()
    compare: CompareTable = CompareTable()
    arms: dict[str, ArmTables] = {}
    tune: TuneTable | None = None

    @model_validator(mode="after")
    def _tune_folds(self) -> Self:
        k = self.split.k_folds
        if self.tune is not None and any(f >= k for f in self.tune.folds):
            raise key_error("tune.folds", self.tune.folds, f"a non-empty list of distinct fold numbers in [0, {k - 1}]")
        return self

    @model_validator(mode="after")
    def _tune_classes(self) -> Self:
        """The fetal data sources have the fetal classes (an nnU-Net data set's are checked when it is read)."""
        if self.tune is None or self.data.source == "nnunet":
            return self
        for key in ("classes", "parenchyma_classes"):
            value = getattr(self.tune, key)
            if value is not None and any(c not in CLASS_NAMES[1:] for c in value):
                raise key_error(f"tune.{key}", value, "a non-empty list of distinct class names from "
                                + ", ".join(repr(c) for c in CLASS_NAMES[1:]))
        return self


TABLES = tuple(name for name, f in StudyConfig.model_fields.items()
               if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)) + ("arms", "tune")
