"""robustseg: tells medical-imaging researchers whether their segmentation results are real."""

from robustseg.errors import InputError, RobustsegError, RunError

__version__ = "0.1.0"
__all__ = ["InputError", "RobustsegError", "RunError", "__version__"]
