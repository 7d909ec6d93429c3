"""The median rule of `tune.pruner: median`, judged at the same share of each trial's schedule.

Optuna's MedianPruner compares trials at the same step (here: epoch). The space varies train.epochs and
the learning rate decays over each trial's own schedule (cosine or linear), so at epoch 3 a 4-epoch trial
has nearly finished its decay while a 15-epoch trial still trains at its peak rate and scores lower for
that reason alone. Judged at the same epoch, long schedules were pruned far more often: in three
10-minute TREC tunes 12 of 55 trials of 10-15 epochs completed against 65 of 148 of 3-5 epochs, and each
tune's best trial ran 4 or 5 epochs. Here a trial at epoch e of E (share e/E) is compared with each complete
trial's score at the last epoch it reported within the same share of its own schedule.

Imports optuna: loaded only when a tune runs (rnnclf.tuning.study._pruner).
"""

from __future__ import annotations

import math
import statistics

import optuna

from rnnclf.tuning.trial import SCHEDULE


class ScheduleMedianPruner(optuna.pruners.BasePruner):
    """Prune a trial when its best score so far trails the median of the complete trials' scores at the
    same share of their schedules. Waits for `startup_trials` complete trials and never judges a trial
    before epoch `warmup_epochs` (recurrent models often start slowly)."""

    def __init__(self, startup_trials: int = 2, warmup_epochs: int = 2) -> None:
        self.startup_trials, self.warmup_epochs = startup_trials, warmup_epochs

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        epoch = trial.last_step
        if epoch is None or epoch < self.warmup_epochs:
            return False
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < self.startup_trials:
            return False
        share = epoch / _epochs(trial)
        bar = [score for other in complete if (score := score_at(other, share)) is not None]
        own = [score for score in trial.intermediate_values.values() if math.isfinite(score)]
        if not bar or not own:
            return False
        median = statistics.median(bar)
        if study.direction == optuna.study.StudyDirection.MINIMIZE:
            return min(own) > median
        return max(own) < median


def _epochs(trial: optuna.trial.FrozenTrial) -> int:
    # A trial from before the attribute (a resumed older study) is taken at its last epoch reported.
    return int(trial.user_attrs.get(SCHEDULE) or max(trial.intermediate_values, default=1) or 1)


def score_at(trial: optuna.trial.FrozenTrial, share: float) -> float | None:
    """The trial's score at the last epoch it reported within `share` of its schedule (a trial stopped
    early by patience counts with its last score); None: none that early, or not finite."""
    epochs = _epochs(trial)
    within = [e for e in trial.intermediate_values if e / epochs <= share + 1e-9]
    if not within:
        return None
    score = trial.intermediate_values[max(within)]
    return score if math.isfinite(score) else None
