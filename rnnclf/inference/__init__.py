"""Using a trained model: scoring (logits, evaluate, score a file; training scores through it too),
scoring threads, predict (Predictor), explain (occlusion), export (TorchScript, ONNX, int8 ONNX),
serve (the HTTP server of `rnnclf serve`) with batcher (its dynamic batching), and backends:
load_predictor chooses torch's Predictor or onnx_predictor's OnnxPredictor (ONNX Runtime; it,
prediction and backends import no torch, so a scoring path without torch stays so).

May import models, prepare, text, data, runs and reports. Never imports cli or training.
"""
