"""Reporting: the results table and charts, and Weights & Biases logging."""
