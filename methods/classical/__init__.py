"""Classical methods: thresholds, per-pixel and per-superpixel classifiers, graph cuts; each module registers
its methods when imported."""
