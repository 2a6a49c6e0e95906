"""The article's five networks: their shapes and layer names at 640, small builds, saving, FLOPs."""

import keras
import numpy as np
import pytest

from mammoseg.models import (
    VARIANTS,
    article_variant_names,
    build_model,
    count_flops,
    decoder_input_shape,
    encoder_layer_names,
    get_spec,
    transposed_layer_names,
    variant_names,
)
from mammoseg.models.blocks import Conv, Transpose


ARTICLE_ORDER = ["fcn_skips", "fcn_bottleneck", "fcn_resize_mid", "dilated_transpose", "dilated_resize"]

# Exact counts at 640, width 1 (BatchNorm moving statistics included, as Keras counts them).
PARAMS_640 = {
    "fcn_skips": 64_176_930,
    "fcn_bottleneck": 64_356_610,
    "fcn_resize_mid": 63_718_162,
    "dilated_transpose": 16_711_210,
    "dilated_resize": 12_516_394,
}

ENCODER_NAMES = ["conv1", "conv1.1", "conv1.2", "pool1", "conv2.1", "conv2.2", "pool2", "conv3.1", "conv3.2",
                 "pool3", "conv4", "conv4.1", "pool4", "conv5", "conv5.1"]
FCN_NAMES = ENCODER_NAMES + ["pool5", "fc_1", "fc_2", "up_conv1", "up_conv2", "up_conv5", "up_conv7", "logits"]
NAMED_LAYERS = {
    "fcn_skips": FCN_NAMES + ["up_conv3", "up_conv4", "up_conv6", "up_conv8"],
    "fcn_bottleneck": FCN_NAMES + ["up_conv3", "up_conv4", "up_conv6", "up_conv8", "bottleneck_5.1",
                                   "bottleneck_4.1", "bottleneck_3.1", "bottleneck_2.1"],
    "fcn_resize_mid": FCN_NAMES + ["up_conv3", "resize_3", "up_conv4", "up_conv6", "resize_6", "bottleneck_5.1",
                                   "bottleneck_4.1", "bottleneck_3.1"],
    "dilated_transpose": ENCODER_NAMES + ["conv5.2", "conv5.3", "upsample_1", "up_conv2", "resize_3", "up_conv4",
                                          "up_conv5", "resize_6", "up_conv6", "up_conv7", "upsample_4",
                                          "upsample_5", "logits"],
    "dilated_resize": ENCODER_NAMES + ["conv5.2", "conv5.3", "resize_1", "up_conv2", "resize_3", "up_conv4",
                                       "up_conv5", "resize_6", "up_conv6", "up_conv7", "upsample_4", "upsample_5",
                                       "logits"],
}
TRANSPOSED = {
    "fcn_skips": ["up_conv1", "up_conv2", "up_conv3", "up_conv4", "up_conv5", "up_conv7", "logits"],
    "fcn_bottleneck": ["up_conv1", "up_conv2", "up_conv3", "up_conv4", "up_conv5", "up_conv7", "logits"],
    "fcn_resize_mid": ["up_conv1", "up_conv2", "up_conv5", "logits"],
    "dilated_transpose": ["upsample_1", "upsample_4", "upsample_5"],
    "dilated_resize": ["upsample_4", "upsample_5"],
}


@pytest.fixture(scope="module")
def models_640():
    """Every variant at the article's size and width (built once; no forward pass at this size)."""
    return {name: build_model(name) for name in article_variant_names()}


def test_registry_order_and_specs_share_the_encoder():
    assert article_variant_names() == ARTICLE_ORDER == variant_names()[:5]
    assert set(ARTICLE_ORDER) <= set(VARIANTS)
    trunks = {name: VARIANTS[name].trunk[:15] for name in ARTICLE_ORDER}
    assert len(set(trunks.values())) == 1
    # The control differs from the final model in its first decoder step only.
    resize, transpose = VARIANTS["dilated_resize"].decoder, VARIANTS["dilated_transpose"].decoder
    assert resize[1:] == transpose[1:] and resize[0].name == "resize_1" and transpose[0].name == "upsample_1"


def test_640_shapes_params_and_names(models_640):
    for name, model in models_640.items():
        assert tuple(model.output.shape) == (None, 640, 640, 2), name
        assert model.output.dtype == "float32"
        assert model.input.name == "image" or model.layers[0].name == "image"
        assert model.count_params() == PARAMS_640[name], name
        present = {layer.name for layer in model.layers}
        assert not set(NAMED_LAYERS[name]) - present, name
        assert transposed_layer_names(model) == TRANSPOSED[name]
        if name.startswith("dilated"):
            assert decoder_input_shape(model) == (20, 20, 512)
        else:
            assert tuple(model.get_layer("fc_1").output.shape) == (None, 2, 2, 2048)
            assert tuple(model.get_layer("fc_2").output.shape) == (None, 2, 2, 2048)
            assert decoder_input_shape(model) == (2, 2, 2048)
            assert model.get_layer("fc_1").kernel_size == (5, 5) and model.get_layer("fc_1").strides == (5, 5)
    assert abs(models_640["dilated_resize"].count_params() - 12.5e6) / 12.5e6 < 0.02


def test_640_encoder_details(models_640):
    model = models_640["fcn_skips"]
    assert tuple(model.get_layer("conv1").output.shape) == (None, 320, 320, 32)
    assert tuple(model.get_layer("pool1").output.shape) == (None, 160, 160, 32)
    assert model.get_layer("pool1").pool_size == (3, 3)
    assert tuple(model.get_layer("conv5.1").output.shape) == (None, 20, 20, 512)
    assert tuple(model.get_layer("pool5").output.shape) == (None, 10, 10, 512)
    bn = model.get_layer("conv1_bn")
    assert bn.momentum == 0.99 and bn.epsilon == 1e-8
    conv = model.get_layer("conv2.1")
    assert conv.kernel_regularizer.l2 == pytest.approx(5e-6)  # his l2_regularizer(1e-5): 1e-5 * sum(k^2) / 2
    assert isinstance(conv.kernel_initializer, keras.initializers.TruncatedNormal)
    assert conv.kernel_initializer.stddev == 0.05
    assert model.get_layer("pool1_dropout").rate == 0.1
    assert model.get_layer("fc_1_dropout").rate == 0.25
    names = encoder_layer_names(model)
    assert names[:2] == ["conv1", "conv1_bn"] and names[-2:] == ["conv5.1", "conv5.1_bn"] and len(names) == 22
    assert encoder_layer_names(models_640["dilated_resize"]) == names


def test_skips_read_batchnorm_before_relu(models_640):
    """`conv1`, `conv4`, `conv5` skips read the BatchNorm output; pools after their dropout."""
    skips = models_640["fcn_skips"]
    assert skips.get_layer("up_conv7_add").input[1] is skips.get_layer("conv1_bn").output
    assert skips.get_layer("up_conv1_add").input[1] is skips.get_layer("pool5_dropout").output
    bottleneck = models_640["fcn_bottleneck"]
    assert bottleneck.get_layer("bottleneck_5.1").input is bottleneck.get_layer("conv5_bn").output
    assert bottleneck.get_layer("bottleneck_4.1").input is bottleneck.get_layer("conv4_bn").output
    assert bottleneck.get_layer("bottleneck_3.1").input is bottleneck.get_layer("conv3.1_relu").output
    mid = models_640["fcn_resize_mid"]
    assert mid.get_layer("bottleneck_3.1").input is mid.get_layer("conv3.2_relu").output
    assert tuple(mid.get_layer("resize_6").output.shape) == (None, 640, 640, 32)


def test_flops_match_the_published_yardstick(models_640):
    assert count_flops(models_640["dilated_resize"]) / 1e9 == pytest.approx(43.3, abs=0.05)


def test_flop_count_by_hand():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)  # 4x4 out: 16*9*3*4 MACs
    z = keras.layers.Conv2DTranspose(5, 4, strides=2, padding="same")(y)  # 4x4 in: 16*16*4*5 MACs
    assert count_flops(keras.Model(x, z)) == 2 * (16 * 9 * 3 * 4 + 16 * 16 * 4 * 5)


@pytest.mark.parametrize("name", ARTICLE_ORDER)
def test_small_build_runs(name):
    keras.utils.set_random_seed(0)
    model = build_model(name, image_size=128, width=0.125)
    out = model(np.random.default_rng(0).normal(size=(2, 128, 128, 1)).astype("float32"), training=False)
    out = keras.ops.convert_to_numpy(out)
    assert out.shape == (2, 128, 128, 2) and np.isfinite(out).all()
    assert model.get_layer("conv1").filters == 4 and model.get_layer("logits").filters == 2


def test_sizes_and_options():
    assert tuple(build_model("dilated_resize", image_size=64, width=0.125).output.shape) == (None, 64, 64, 2)
    assert tuple(build_model("fcn_skips", image_size=256, width=0.125).get_layer("fc_2").output.shape)[1:3] == (2, 2)
    for variant, size in [("fcn_skips", 96), ("fcn_resize_mid", 640 + 32), ("dilated_resize", 80), ("dilated_transpose", 0)]:
        with pytest.raises(ValueError, match="image size"):
            build_model(variant, image_size=size, width=0.125)
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("unet")
    with pytest.raises(ValueError, match="width"):
        build_model("dilated_resize", image_size=64, width=0)
    tiny = build_model("dilated_resize", image_size=64, width=0.01)
    assert tiny.get_layer("conv1").filters == 1 and tiny.get_layer("upsample_5").filters == 1


def test_transpose_kernel_dropout_and_l2_options():
    k3 = build_model("dilated_transpose", image_size=64, width=0.125, transpose_kernel=3)
    layer = k3.get_layer("upsample_1")
    assert layer.kernel_size == (3, 3) and tuple(layer.output.shape) == (None, 4, 4, 64)
    assert build_model("dilated_transpose", image_size=64, width=0.125).get_layer("upsample_1").kernel_size == (4, 4)
    plain = build_model("fcn_skips", image_size=128, width=0.125, dropout=False, l2=0.0)
    assert not [layer for layer in plain.layers if isinstance(layer, keras.layers.Dropout)]
    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in plain.layers)
    full = build_model("fcn_skips", image_size=128, width=0.125)
    assert full.count_params() == plain.count_params()
    assert {"up_conv5_dropout", "up_conv7_dropout"} <= {layer.name for layer in full.layers}


# Weighted layers whose kernel the author left out of the L2 penalty (his 3.2.4.01, 3.2.5.03, 3.2.7.01,
# 3.6.0.04); every other conv and transposed conv carries it.
UNREGULARISED = {
    "fcn_skips": ["up_conv1", "up_conv2", "up_conv3", "up_conv4", "up_conv5", "up_conv6", "up_conv7", "up_conv8",
                  "logits"],
    "fcn_bottleneck": ["up_conv1", "bottleneck_5.1", "up_conv2", "bottleneck_4.1", "up_conv3", "bottleneck_3.1",
                       "up_conv4", "bottleneck_2.1", "up_conv5", "up_conv6", "up_conv7", "up_conv8", "logits"],
    "fcn_resize_mid": ["bottleneck_5.1", "up_conv3", "bottleneck_4.1", "bottleneck_3.1", "logits"],
    "dilated_transpose": ["upsample_4", "upsample_5", "logits"],
    "dilated_resize": ["upsample_4", "upsample_5", "logits"],
}


def test_regularised_layers_are_the_authors(models_640):
    for name, model in models_640.items():
        kernels = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
        bare = [layer.name for layer in kernels if layer.kernel_regularizer is None]
        assert sorted(bare) == sorted(UNREGULARISED[name]) == sorted(get_spec(name).without_l2), name
        assert [layer.kernel_regularizer.l2 for layer in kernels if layer.kernel_regularizer] == pytest.approx(
            [5e-6] * (len(kernels) - len(bare)))
        assert {"conv1", "conv5.1"} <= {layer.name for layer in kernels if layer.kernel_regularizer}
    assert models_640["fcn_resize_mid"].get_layer("up_conv5").kernel_regularizer is not None
    assert models_640["dilated_transpose"].get_layer("upsample_1").kernel_regularizer is not None
    assert models_640["fcn_skips"].get_layer("fc_1").kernel_regularizer is not None


def test_l2_penalty_is_the_authors_scale():
    """Keras adds lambda/2 * sum(k^2) per regularised kernel: TF1's l2_regularizer(lambda) = lambda * sum(k^2) / 2."""
    keras.utils.set_random_seed(2)
    model = build_model("dilated_resize", image_size=64, width=0.125, l2=1e-5)
    expected = sum(1e-5 * float(np.sum(keras.ops.convert_to_numpy(layer.kernel).astype(np.float64) ** 2)) / 2
                   for layer in model.layers if getattr(layer, "kernel_regularizer", None) is not None)
    assert expected > 0
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == pytest.approx(expected, rel=1e-5)
    assert not build_model("dilated_resize", image_size=64, width=0.125, l2=0.0).losses


def test_specs_are_steps_of_the_shared_blocks():
    for name in ARTICLE_ORDER:
        spec = get_spec(name)
        outputs = [step for step in spec.decoder if isinstance(step, (Conv, Transpose)) and step.output]
        assert [step.name for step in outputs] == ["logits"] and spec.decoder[-1] is outputs[0]


def test_mixed_precision_output_stays_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("fcn_resize_mid", image_size=128, width=0.125)
        assert model.get_layer("conv1").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["fcn_bottleneck", "dilated_transpose"])
def test_save_load_round_trip_safe_mode(name, tmp_path):
    keras.utils.set_random_seed(1)
    model = build_model(name, image_size=128, width=0.125)
    x = np.random.default_rng(1).normal(size=(1, 128, 128, 1)).astype("float32")
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=False)), keras.ops.convert_to_numpy(model(x, training=False))
    )


def test_torch_backend_names_have_no_dots(monkeypatch):
    """PyTorch rejects dotted parameter names: under its backend `conv1.1` is built as `conv1_1`."""
    from mammoseg.models import layer_name

    assert layer_name("conv1.1") == "conv1.1"
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    assert layer_name("bottleneck_5.1") == "bottleneck_5_1"
    for name in ["fcn_bottleneck", "dilated_resize"]:
        model = build_model(name, image_size=128, width=0.125)
        names = [layer.name for layer in model.layers]
        assert not [n for n in names if "." in n] and len(set(names)) == len(names)
        assert encoder_layer_names(model)[-2:] == ["conv5_1", "conv5_1_bn"]
        assert model.get_layer(layer_name("conv1.2")) is not None
