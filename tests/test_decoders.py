"""The upsampling designs beyond the article, checked against known answers: depth-to-space, ICNR, bilinear
additive upsampling, the sub-pixel kernel as a transposed kernel, their FLOPs, and where theory puts each
design's checkerboard at initialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mammoseg.metrics.checkerboard import crop_border, kernel_checkerboard_score, phase_mean_score, subpixel_transposed_kernel
from mammoseg.models import build_model, count_flops, get_spec, variant_names
from mammoseg.models.blocks import BuildOptions, apply_step
from mammoseg.models.kernels import model_kernel_overlap, model_kernel_scores
from mammoseg.models.steps import BilinearAdditive, Resize, SubPixel, Transpose
from mammoseg.models.upsampling import depth_to_space, space_to_depth

NEW_DESIGNS = ("dilated_bilinear", "dilated_subpixel", "dilated_subpixel_icnr", "dilated_bilinear_additive")
RANDOM_KERNEL_SCORE = np.sqrt(3 / 4)  # zero-mean i.i.d. taps, 4 phases: E var / E mean-square = 3/4


def _first_step(step, channels: int = 32, side: int = 6) -> keras.Model:
    """One upsampling step alone on a [side, side, channels] feature map, built as the networks build it."""
    x = keras.Input((side, side, channels))
    return keras.Model(x, apply_step(step, x, {}, BuildOptions()))


def _run(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_every_design_is_a_registered_dilated_spec_differing_in_its_first_step_only():
    names = variant_names()
    assert set(NEW_DESIGNS) <= set(names) and names.index("dilated_resize") < names.index("dilated_bilinear")
    reference = get_spec("dilated_resize")
    for name in NEW_DESIGNS:
        spec = get_spec(name)
        assert spec.decoder[1:] == reference.decoder[1:] and spec.trunk == reference.trunk, name
        assert (spec.positive_weight, spec.probe_step, spec.article) == (18.0, "up_conv2", False)


def test_depth_to_space_inverts_space_to_depth_in_tensorflows_order():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(2, 6, 4, 12)).astype("float32")
    shuffled = keras.ops.convert_to_numpy(depth_to_space(x, 2))
    np.testing.assert_array_equal(shuffled, tf.nn.depth_to_space(x, 2).numpy())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(space_to_depth(shuffled, 2)), x)
    y = np.random.default_rng(1).normal(size=(1, 9, 6, 2)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(depth_to_space(space_to_depth(y, 3), 3)), y)


def test_icnr_subpixel_equals_nearest_upsampling_of_a_convolution():
    keras.utils.set_random_seed(4)
    model = _first_step(SubPixel("upsample_1", 8, icnr=True), channels=5)
    conv = model.get_layer("upsample_1")
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    np.testing.assert_array_equal(kernel[..., :8], kernel[..., 24:])  # four copies of one [3, 3, 5, 8] kernel
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 5)).astype("float32")
    low = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)
    low.build(x.shape)
    low.kernel.assign(kernel[..., :8])
    nearest = np.repeat(np.repeat(keras.ops.convert_to_numpy(low(x)), 2, axis=1), 2, axis=2)
    out = _run(model, x)
    np.testing.assert_allclose(out, nearest, rtol=1e-5, atol=1e-6)
    assert all(phase_mean_score(out[n, :, :, c]) == 0.0 for n in range(2) for c in range(8))
    keras.utils.set_random_seed(4)
    plain = _run(_first_step(SubPixel("upsample_1", 8), channels=5), x)
    assert min(phase_mean_score(plain[n, :, :, c]) for n in range(2) for c in range(8)) > 0.0


def test_subpixel_kernel_as_a_transposed_kernel_reproduces_the_layer():
    """Scattering every input pixel through the rearranged kernel (a stride-2 transposed convolution with no
    padding) gives the sub-pixel output exactly, shifted by factor x (k - 1 - pad)."""
    rng = np.random.default_rng(3)
    k, r, c_in, c, side = 3, 2, 3, 2, 5
    w = rng.normal(size=(k, k, c_in, r * r * c))
    x = rng.normal(size=(side, side, c_in))
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    low = np.stack([np.stack([np.einsum("uvi,uvio->o", padded[h:h + k, v:v + k], w) for v in range(side)])
                    for h in range(side)])
    subpixel = keras.ops.convert_to_numpy(depth_to_space(low[None], r))[0]
    kernel = subpixel_transposed_kernel(w, r)  # [r*k, r*k, c, c_in]
    full = np.zeros(((side - 1) * r + r * k, (side - 1) * r + r * k, c))
    for p in range(side):
        for q in range(side):
            full[r * p:r * p + r * k, r * q:r * q + r * k] += np.einsum("uvoi,i->uvo", kernel, x[p, q])
    shift = r * (k - 1 - (k - 1) // 2)
    np.testing.assert_allclose(full[shift:shift + r * side, shift:shift + r * side], subpixel, atol=1e-10)


def test_bilinear_additive_upsampling_of_a_constant_map_is_constant():
    model = _first_step(BilinearAdditive("upsample_1"), channels=8)
    out = _run(model, np.full((1, 6, 6, 8), 0.75, dtype="float32"))
    assert out.shape == (1, 12, 12, 2)
    np.testing.assert_allclose(out, 3.0, rtol=1e-6)
    ramp = np.arange(8, dtype="float32").reshape(1, 1, 1, 8) * np.ones((1, 6, 6, 1), "float32")
    np.testing.assert_allclose(_run(model, ramp)[0, 0, 0], [0 + 1 + 2 + 3, 4 + 5 + 6 + 7])  # consecutive groups


def test_flops_of_the_new_layers_by_hand():
    # sub-pixel: a 3x3 conv 32 -> 4 x 16 channels at 6x6; the shuffle, resizes and group sums compute nothing
    assert count_flops(_first_step(SubPixel("upsample_1", 16))) == 2 * 6 * 6 * 9 * 32 * 64
    assert count_flops(_first_step(BilinearAdditive("upsample_1"))) == 0
    assert count_flops(_first_step(Resize("resize_1", 2, interpolation="bilinear"))) == 0
    costs = {name: count_flops(build_model(name, image_size=64, width=0.125)) for name in ("dilated_resize", *NEW_DESIGNS)}
    # at 64 px, width 0.125: the first step reads 2x2x64; up_conv2 (3x3, 64 filters) runs at 4x4
    assert costs["dilated_bilinear"] == costs["dilated_resize"]
    assert costs["dilated_subpixel"] - costs["dilated_resize"] == 2 * 2 * 2 * 9 * 64 * 256
    assert costs["dilated_resize"] - costs["dilated_bilinear_additive"] == 2 * 4 * 4 * 9 * (64 - 16) * 64


def _kernel_scores(step, seeds: int) -> list[float]:
    scores = []
    for seed in range(seeds):
        keras.utils.set_random_seed(seed)
        scores.append(model_kernel_scores(_first_step(step)).get("upsample_1", 0.0))
    return scores


@pytest.mark.parametrize("step, expected", [
    (SubPixel("upsample_1", 64), RANDOM_KERNEL_SCORE),
    (SubPixel("upsample_1", 64, icnr=True), 0.0),
    (Transpose("upsample_1", 64, 4, 2), RANDOM_KERNEL_SCORE),
    (Transpose("upsample_1", 64, 3, 2), None),  # uneven overlap: 4, 2, 2, 1 taps per phase (below)
])
def test_kernel_score_at_init_over_seeds_sits_where_theory_puts_it(step, expected):
    scores = np.array(_kernel_scores(step, seeds=12))
    if expected == 0.0:
        assert (scores == 0.0).all()
    elif expected is None:
        # phase sums of 4, 2, 2, 1 i.i.d. taps: variances 4:2:2:1 around 0 give E var / E mean-square = 3/4 too
        assert abs(scores.mean() - RANDOM_KERNEL_SCORE) < 0.05
    else:
        assert abs(scores.mean() - expected) < 0.03 and scores.std() < 0.05


@pytest.mark.parametrize("name, checkerboard", [
    ("dilated_resize", False), ("dilated_bilinear", False), ("dilated_bilinear_additive", False),
    ("dilated_subpixel_icnr", False), ("dilated_subpixel", True), ("dilated_transpose", True),
])
def test_first_step_output_on_a_constant_map_at_init(name, checkerboard):
    """A constant feature map through each design's first step, over seeds: interpolation and ICNR leave no
    phase pattern (score exactly 0); a random sub-pixel or transposed kernel gives every channel a pure
    period-2 pattern inside the zero-padded border (score 1, the map is its phase means)."""
    step = get_spec(name).decoder[0]
    step = Transpose(step.name, 16, 4, 2) if isinstance(step, Transpose) else step
    step = SubPixel(step.name, 16, icnr=step.icnr) if isinstance(step, SubPixel) else step
    for seed in range(4):
        keras.utils.set_random_seed(seed)
        out = _run(_first_step(step), np.full((1, 6, 6, 32), 0.5, dtype="float32"))[0]
        scores = [phase_mean_score(crop_border(out[..., c], 4)) for c in range(out.shape[-1])]
        if checkerboard:
            assert np.allclose(scores, 1.0), (name, seed)
        else:
            assert max(scores) < 1e-6, (name, seed)


def test_model_kernel_measures_cover_the_subpixel_layers():
    keras.utils.set_random_seed(0)
    icnr = build_model("dilated_subpixel_icnr", image_size=64, width=0.125)
    plain = build_model("dilated_subpixel", image_size=64, width=0.125)
    assert model_kernel_scores(icnr)["upsample_1"] == 0.0 and model_kernel_scores(plain)["upsample_1"] > 0.5
    assert set(model_kernel_scores(plain)) == {"upsample_1", "upsample_4", "upsample_5"}
    assert model_kernel_overlap(plain)["upsample_1"] == {"taps_per_phase": [[9, 9], [9, 9]], "uneven": False}
    kernel = keras.ops.convert_to_numpy(plain.get_layer("upsample_1").kernel)
    assert kernel_checkerboard_score(subpixel_transposed_kernel(kernel, 2), 2) == model_kernel_scores(plain)["upsample_1"]


def test_new_designs_save_and_load(tmp_path):
    from mammoseg.models.saving import load_model

    x = np.random.default_rng(0).normal(size=(1, 64, 64, 1)).astype("float32")
    for name in ("dilated_subpixel_icnr", "dilated_bilinear_additive"):
        keras.utils.set_random_seed(1)
        model = build_model(name, image_size=64, width=0.125)
        model.save(tmp_path / f"{name}.keras")
        loaded = load_model(tmp_path / f"{name}.keras")
        np.testing.assert_array_equal(_run(loaded, x), _run(model, x))


def test_the_decoder_study_has_every_design_on_the_final_networks_body():
    from pathlib import Path

    from mammoseg.workflows.ablate import load_plan

    plan = load_plan(Path(__file__).resolve().parents[1] / "experiments" / "decoders.toml", runs_dir="unused")
    arms = {run.arm: run.config for run in plan.runs}
    assert len(plan.runs) == 21 and plan.baseline == "dilated_resize"
    assert set(NEW_DESIGNS) | {"dilated_resize", "dilated_transpose", "dilated_transpose-k3"} == set(arms)
    assert arms["dilated_transpose-k3"].transpose_kernel == 3
    assert {(c.image_size, c.width, c.epochs, c.positive_weight) for c in arms.values()} == {(256, 0.25, 12, 18.0)}
