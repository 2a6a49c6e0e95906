"""Experiments: the layer that runs training, evaluation and reports together."""
