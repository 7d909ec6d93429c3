"""The networks: the recurrent classifier core (classifier.py), the language model that shares its
encoder (language_model.py), and the opt-in add-ons beside it (addons/: ensemble, linear n-gram blend).

May import config, errors and batching. Never imports data, text or prepare: a model sees tensors of
ids, never files or words.
"""
