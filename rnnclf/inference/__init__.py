"""Using a trained model: scoring (logits, evaluate, score a file; training scores through it too),
scoring threads, predict (Predictor), explain (occlusion), export (TorchScript, ONNX), and serve (the
HTTP server of `rnnclf serve`) with batcher (its dynamic batching).

May import models, prepare, text, data, runs and reports. Never imports cli or training.
"""
