"""Measuring: the scoring rule (confusion matrices and the scores derived from them), boundary and centreline
scores, calibration, and latency."""
