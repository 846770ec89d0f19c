"""The torch layer: models, losses, device selection, dataset + sampler, training and prediction.

The only package of robustseg that imports torch; ``metrics``, ``stats``, ``perturb``, ``qc`` and
``data`` stay importable without it.
"""
