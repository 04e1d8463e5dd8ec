"""Post-processing stages (dense CRF, morphology, test-time augmentation) that follow a method in a pipeline
such as ``"deeplab+crf"``; each module registers its stages when imported."""
