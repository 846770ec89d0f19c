"""Study files: the pydantic schema (``schema``), TOML / ``--set`` loading (``load``) and the built ``Study``."""

from robustseg.config.load import packaged_study, parse_override, validate
from robustseg.config.schema import (
    DataTable,
    EvalTable,
    ExecutionTable,
    ExternalTable,
    LossTable,
    ModelTable,
    PerturbTable,
    SamplerTable,
    SplitTable,
    StudyConfig,
    TrainTable,
    TuneTable,
)
from robustseg.config.study import ArmSpec, ExternalSet, Study, build_study, load_study, stable_hash

__all__ = [
    "ArmSpec", "DataTable", "EvalTable", "ExecutionTable", "ExternalSet", "ExternalTable", "LossTable", "ModelTable",
    "PerturbTable", "SamplerTable", "SplitTable", "Study", "StudyConfig", "TrainTable", "TuneTable", "build_study",
    "load_study", "packaged_study", "parse_override", "stable_hash", "validate",
]
