"""Language-model pretraining of the classifier's encoder (`rnnclf pretrain`, and the first stage of a
two-stage `rnnclf train`).

May import models, prepare, text, data, runs and training's shared parts (stopping, optimization,
distributed). Never imports cli or inference.
"""
