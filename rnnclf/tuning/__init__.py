"""`rnnclf tune`: search the config space for the best recurrent model on the user's own data, within a
time budget, on Optuna (the `tune` extra).

    space.py    the search space: `tune.space` parsed and checked, the default space, the fixed keys
    trial.py    one trial = one ordinary training run (rnnclf.training.loop.train), reported per epoch
    study.py    the Optuna study: storage, sampler, pruner, budget, workers, resume
    pruning.py  the median rule, judged at the same share of each trial's schedule
    folds.py    tune.folds: K stratified folds of the training file, each trial scored as their mean
    outcome.py  what the user gets: best.yaml, trials.csv, tune.json, the best run as runs/LATEST,
                its test score (scored once), plots

May import training, text, data, prepare, models, config, runtime, runs, reports and inference.scoring;
never cli (nothing imports cli) nor inference's prediction (predict, explain, export).
"""
