"""The fault and bad-input corpus: inputs built by code (``build.py``), one expected outcome per case (``cases.py``)."""
