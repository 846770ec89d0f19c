"""Study files: the schema and TOML / ``--set`` loading (the only validator of study keys)."""

from robustseg.config.study import (
    ArmSpec,
    ExternalSet,
    Study,
    build_study,
    load_study,
    parse_override,
    stable_hash,
)

__all__ = ["ArmSpec", "ExternalSet", "Study", "build_study", "load_study", "parse_override", "stable_hash"]
