"""Training a classifier: loop.py (train(config) -> metrics, read top to bottom) and its parts: the
optimisation step, last.pt and resuming, weight averaging, stopping on a signal, data-parallel
processes, the final scores (outcome), the linear baseline, and starting from a language model.

May import models, prepare, text, data, runs, reports, pretraining and inference.scoring. Never imports
cli, nor inference's prediction (predict, explain, export).
"""
