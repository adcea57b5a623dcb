"""Loss-weight search with Optuna (`pae-lab tune`), on top of the orchestration `pae-lab run` uses.

driver.py      the ask/tell loop: asks Optuna for trials, runs them through the study driver, tells results
algorithms.py  the sampler and pruner registries and the storage factory
apply.py       a trial's values -> a study config with one inline variant; defaults; cross-checks
objectives.py  objective values from a trial's results, intermediate values for pruning
outputs.py     trials.csv, pareto.csv, importances.csv, best.json
The `search:` block itself is a config model (pae_lab/config/search.py).
"""
