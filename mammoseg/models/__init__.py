"""The segmentation networks, one registered spec each, built from one set of blocks, and their cost.

    from mammoseg.models import build_model, variant_names
    model = build_model("dilated_resize", image_size=640)   # logits [640, 640, 2]

Names are loaded on first use: the registry (`variant_names`, `get_spec`, `register`) can be read
without importing Keras, so a command can list or check variants before it chooses a backend.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "VariantSpec": "registry", "register": "registry", "registered": "registry", "get_spec": "registry",
    "variant_names": "registry", "article_variant_names": "registry", "check_image_size": "registry",
    "build_model": "build", "decoder_input_shape": "build", "encoder_layer_names": "build",
    "transposed_layer_names": "build", "subpixel_layer_names": "build",
    "count_activations": "flops", "count_flops": "flops", "layer_name": "blocks",
}  # fmt: skip

__all__ = sorted(_HOMES) + ["VARIANTS"]


def __getattr__(name: str) -> Any:
    if name == "VARIANTS":  # every registered spec by name (the live registry)
        return importlib.import_module("mammoseg.models.registry").registered()
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"mammoseg.models.{_HOMES[name]}"), name)
