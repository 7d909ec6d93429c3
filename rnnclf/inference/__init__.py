"""Using a trained model: scoring (logits, evaluate, score a file; training scores through it too),
scoring threads, predict (Predictor), explain (occlusion) and export (TorchScript, ONNX).

May import models, prepare, text, data, runs and reports. Never imports cli or training.
"""
