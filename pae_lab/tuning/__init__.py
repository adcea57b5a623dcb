"""Loss-weight search with Optuna (`pae-lab tune`), on top of the orchestration `pae-lab run` uses.

space.py       the `search:` block of a study (parameters, objectives, sampler, pruner, storage)
algorithms.py  the sampler and pruner registries and the storage factory
apply.py       a trial's values -> a study config with one inline variant; defaults; cross-checks
objectives.py  objective values from a trial's results, intermediate values for pruning
outputs.py     trials.csv, pareto.csv, importances.csv, best.json
The driver itself is pae_lab/tune.py. This package imports nothing on purpose: config.py imports
space.py, and the other modules import config.py.
"""
