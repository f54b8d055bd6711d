"""Evaluation metrics, one module per task family."""
