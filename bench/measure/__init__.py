"""Measuring: the scoring rule (confusion matrices and the scores derived from them) and latency."""
