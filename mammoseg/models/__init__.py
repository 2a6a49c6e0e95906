"""The article's five segmentation networks, built from one set of blocks, and their cost.

    from mammoseg.models import build_model, variant_names
    model = build_model("dilated_resize", image_size=640)   # logits [640, 640, 2]
"""

from mammoseg.models.blocks import layer_name
from mammoseg.models.flops import count_activations, count_flops
from mammoseg.models.variants import (
    VARIANTS,
    VariantSpec,
    build_model,
    check_image_size,
    decoder_input_shape,
    encoder_layer_names,
    get_spec,
    transposed_layer_names,
    variant_names,
)

__all__ = [
    "VARIANTS",
    "VariantSpec",
    "build_model",
    "check_image_size",
    "count_activations",
    "count_flops",
    "decoder_input_shape",
    "encoder_layer_names",
    "get_spec",
    "layer_name",
    "transposed_layer_names",
    "variant_names",
]
