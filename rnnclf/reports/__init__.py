"""Scores and pictures of a run: metrics (single- and multi-label), plots (matplotlib, an extra) and
TensorBoard scalars (an extra).

May import runs, errors, files and reporter. Never imports cli, training or inference.
"""
