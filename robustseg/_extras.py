"""Optional integrations behind pip extras, imported only when a study asks for them.

``pip install robustseg`` runs every verb on one machine. What only some users need lives in extras:

========================  ==============================  ======================================
extra                     module(s)                       asked for by
========================  ==============================  ======================================
``robustseg[timm]``       ``timm``                        ``model.name = "timm_unet"``
``robustseg[dask]``       ``distributed``                 ``--scheduler`` / ``execution.executor = "dask"``
``robustseg[slurm]``      ``dask_jobqueue``               ``robustseg study --cluster slurm``
``robustseg[mlflow]``     ``mlflow``                      ``execution.tracking = "mlflow"``
``robustseg[tensorboard]``  ``tensorboard``               ``execution.tracking = "tensorboard"``
========================  ==============================  ======================================

:func:`require` imports one of them and turns a missing package into one :class:`InputError` line that
names the setting and the extra (CLI exit 2), before any work starts. No module of the core imports these
packages at module load (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from robustseg.errors import InputError

EXTRA_OF: dict[str, str] = {
    "timm": "timm",
    "distributed": "dask",
    "dask_jobqueue": "slurm",
    "mlflow": "mlflow",
    "tensorboard": "tensorboard",
}
"""Top-level module -> the extra that installs it."""


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (a key of :data:`EXTRA_OF` or a submodule of one) for ``what`` (the setting that needs it).

    A missing package raises ``InputError``: ``<what> needs <package>, which is not installed: pip install
    "robustseg[<extra>]"``; a package that is installed but fails to import says so, with the reason.
    """
    top = module.split(".")[0]
    extra = EXTRA_OF[top]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == top:
            raise InputError(f"{what} needs {top}, which is not installed: "
                             f"pip install \"robustseg[{extra}]\"") from None
        raise InputError(f"{what}: {top} is installed but cannot be imported ({exc}); "
                         f"reinstall it with pip install \"robustseg[{extra}]\"") from None
    except ImportError as exc:
        raise InputError(f"{what}: {top} is installed but cannot be imported ({exc}); "
                         f"reinstall it with pip install \"robustseg[{extra}]\"") from None
