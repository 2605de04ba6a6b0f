"""Evaluation on the Numenta Anomaly Benchmark: its corpus, its scorer, and streaming detectors."""
