"""Campaign orchestration: plan (arms x folds x seeds), run folders and their state, the runner,
executors (in-process, local processes, Dask) and the study that wires them. Holds no maths."""
