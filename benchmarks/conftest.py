"""The benchmarks' own checks (`pytest benchmarks`): each script is tried at a toy size beside it, so
the test suite under tests/ never imports or runs a benchmark. CPU only, quiet TensorFlow."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
