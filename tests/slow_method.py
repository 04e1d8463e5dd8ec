"""Methods for the crash tests, imported with ``--import slow_method``: one slow to fit that logs each fit to a
file (so a test can tell which cells ran), one that kills its own process."""

from __future__ import annotations

import os
import time

import numpy as np

from segbench.methods import METHODS, Method


@METHODS.register("test-slow-logged")
class SlowLogged(Method):
    description = "sleeps in fit and logs it (tests only)"

    def _fit(self, train, val):
        with open(os.environ["SEGBENCH_TEST_FIT_LOG"], "a") as f:
            f.write(f"{self.seed}\n")
        time.sleep(float(os.environ.get("SEGBENCH_TEST_FIT_SECONDS", "0.5")))

    def _predict_proba(self, image):
        proba = np.zeros((self.num_classes, *image.shape[:2]), np.float32)
        proba[0] = 1
        return proba


@METHODS.register("test-dies")
class Dies(Method):
    description = "kills its own process in fit, as an out-of-memory kill would (tests only)"

    def _fit(self, train, val):
        os._exit(3)

    def _predict_proba(self, image):  # pragma: no cover
        raise AssertionError
