"""Checkerboard measures on constructed kernels and maps, and the at-init study on tiny models."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from mammoseg.metrics.checkerboard import (
    activation_scores,
    aliasing_energy_fraction,
    aliasing_peak_db,
    kernel_checkerboard_score,
    kernel_overlap,
    kernel_phase_sums,
    map_scores,
    period_scores,
    phase_mean_score,
    phase_means,
    radial_power_spectrum,
    resize_conv_kernel,
)
from mammoseg.models.kernels import model_kernel_overlap, model_kernel_scores

N = 64
YY, XX = np.mgrid[0:N, 0:N]
CHECKER = ((YY + XX) % 2) * 2.0 - 1.0
SMOOTH = np.sin(2 * np.pi * XX / N) + np.cos(2 * np.pi * 2 * YY / N)


def test_pure_checkerboard_scores_one():
    scores = map_scores(CHECKER)
    assert scores["phase_mean"] == pytest.approx(1.0)
    assert scores["aliasing_fraction"] == pytest.approx(1.0)
    stripes = np.where(XX % 2 == 0, 1.0, -1.0)  # the (0, pi) bin alone
    assert map_scores(stripes)["phase_mean"] == pytest.approx(1.0)


def test_smooth_and_constant_maps_score_zero():
    assert phase_mean_score(SMOOTH) < 1e-10 and aliasing_energy_fraction(SMOOTH) < 1e-20
    assert map_scores(np.full((N, N), 3.7)) == {"phase_mean": 0.0, "aliasing_fraction": 0.0, "peak_db": 0.0}
    # A smooth map that is not periodic on the grid still scores close to 0.
    bump = np.exp(-((XX - 30) ** 2 + (YY - 35) ** 2) / 200.0)
    assert phase_mean_score(bump) < 0.05


def test_checkerboard_on_smooth_map():
    scores = map_scores(SMOOTH + 0.1 * CHECKER)
    assert 0.05 < scores["phase_mean"] < 0.2
    assert scores["peak_db"] > 100  # the smooth part has no energy next to the Nyquist bins
    assert phase_means(CHECKER, 2).tolist() == [[-1.0, 1.0], [1.0, -1.0]]


@pytest.mark.parametrize("stride,size", [(2, 32), (4, 32), (3, 30)])
def test_white_noise_sits_at_its_baseline(stride, size):
    """AC energy of white noise is spread evenly over the size^2 - 1 AC bins, stride^2 - 1 of which alias.

    The fraction is a Beta(a/2, (size^2 - 1 - a)/2) variable with a = stride^2 - 1: mean a / (size^2 - 1).
    It is also exactly the phase-mean score squared (Parseval on the stride x stride phase grid).
    """
    rng = np.random.default_rng(stride)
    maps = rng.normal(size=(400, size, size))
    fractions = np.array([aliasing_energy_fraction(m, stride) for m in maps])
    expected = (stride**2 - 1) / (size**2 - 1)
    assert fractions.mean() == pytest.approx(expected, rel=0.15)
    scores = np.array([phase_mean_score(m, stride) for m in maps[:20]])
    np.testing.assert_allclose(scores**2, fractions[:20], rtol=1e-9)
    assert abs(np.mean([aliasing_peak_db(m, stride) for m in maps[:100]])) < 3.0


def test_non_multiple_maps_are_cropped():
    assert phase_mean_score(np.pad(CHECKER, ((0, 1), (0, 1)))[: N + 1, : N + 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        phase_mean_score(np.ones(5))


def test_radial_power_spectrum_peaks_where_the_pattern_is():
    freqs, power = radial_power_spectrum(np.cos(2 * np.pi * 8 * XX / N))
    assert freqs[np.argmax(power)] == pytest.approx(8 / N)
    freqs, power = radial_power_spectrum(CHECKER)
    assert freqs[np.argmax(power)] == pytest.approx(np.sqrt(0.5), abs=1 / N)


def test_period_scores_separate_scales():
    coarse = np.kron(CHECKER[:16, :16], np.ones((4, 4)))  # checkerboard of 4x4 blocks: period 8
    scores = period_scores(coarse + 0.5 * CHECKER)
    assert scores[8] == pytest.approx(1.0) and scores[2] < 0.5
    assert period_scores(CHECKER)[8] == 0.0


def _cells(size: int, cell: int) -> np.ndarray:
    """A pure checkerboard of cell x cell squares aligned with the image origin (period 2 * cell)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy // cell + xx // cell) % 2) * 2.0 - 1.0


@pytest.mark.parametrize("size", [128, 256, 384, 640, 96, 160, 224])
def test_every_period_scores_one_on_its_own_pattern(size):
    """FCN sizes (multiples of 128) and dilated ones (multiples of 32), with the S/8 border the study drops.

    At 640 the 80-px border is not a multiple of the 32-px blocks of period 64: unaligned blocks
    straddle two cells and the pure pattern would score far below 1.
    """
    border = size // 8
    scored = []
    for period in (2, 4, 8, 16, 32, 64):
        scores = period_scores(_cells(size, period // 2), (period,), border)
        if period in scores:
            assert scores[period] == pytest.approx(1.0), period
            scored.append(period)
    assert scored[:4] == [2, 4, 8, 16]
    if size >= 384:
        assert scored[-1] == 64
    pixel = map_scores(_cells(size, 1), 2, border)
    assert pixel["phase_mean"] == pytest.approx(1.0) and pixel["aliasing_fraction"] == pytest.approx(1.0)
    # A border that is odd, or no border at all, relabels phases but changes no score.
    assert map_scores(_cells(size, 1), 2, border + 1)["phase_mean"] == pytest.approx(1.0)
    assert period_scores(_cells(size, 8), (16,), border + 3)[16] == pytest.approx(1.0)


def test_activation_scores_per_channel():
    act = np.stack([CHECKER, -CHECKER, SMOOTH], axis=-1)
    scores = activation_scores(act)
    assert scores["phase_mean"] < 1e-10  # the channel mean cancels the two opposite checkerboards
    assert scores["phase_mean_channel_median"] == pytest.approx(1.0)


def test_kernel_even_overlap_constant_weights_is_zero():
    assert kernel_checkerboard_score(np.ones((4, 4, 8, 3)), 2) == 0.0
    assert kernel_checkerboard_score(np.random.default_rng(0).normal(size=(3, 3, 4, 4)), 1) == 0.0
    assert kernel_checkerboard_score(np.zeros((4, 4)), 2) == 0.0


def test_kernel_uneven_overlap_and_taps_per_phase():
    # k=3, s=2: phases receive 4, 2, 2 and 1 taps.
    assert kernel_phase_sums(np.ones((3, 3)), 2)[..., 0].tolist() == [[4.0, 2.0], [2.0, 1.0]]
    g = np.array([4.0, 2.0, 2.0, 1.0])
    expected = np.sqrt(g.var() / (g**2).mean())
    assert kernel_checkerboard_score(np.ones((3, 3, 2, 5)), 2) == pytest.approx(expected)
    assert kernel_checkerboard_score(np.ones((3, 3)), 2) == pytest.approx(expected)
    assert kernel_overlap(3, 2) == {"taps_per_phase": [[4, 2], [2, 1]], "uneven": True}
    assert kernel_overlap(4, 2) == {"taps_per_phase": [[4, 4], [4, 4]], "uneven": False}
    assert kernel_overlap((5, 4), (5, 2))["uneven"] is False and kernel_overlap((3, 4), 2)["uneven"] is True


def test_kernel_score_is_per_output_channel():
    """Opposite imbalances in two output channels do not cancel: each channel shows a full checkerboard."""
    h = np.zeros((4, 4, 2, 3))  # Keras Conv2DTranspose layout [kH, kW, out, in]
    h[0, 0, 0, :] = 1.0
    h[0, 0, 1, :] = -1.0
    assert kernel_phase_sums(h, 2)[..., 0].sum() == 3.0 and kernel_phase_sums(h, 2).sum() == 0.0
    # One phase of four lit, the others 0: var / mean of squares = 3/4 in each channel.
    assert kernel_checkerboard_score(h, 2) == pytest.approx(np.sqrt(0.75))
    x = np.ones((6, 6, 3))  # constant input through the transposed conv: a checkerboard in each channel
    out = np.zeros((14, 14, 2))
    for i in range(6):
        for j in range(6):
            out[2 * i : 2 * i + 4, 2 * j : 2 * j + 4] += np.einsum("aboi,i->abo", h, x[i, j])
    inner = out[4:-4, 4:-4]
    assert phase_mean_score(inner[..., 0]) == pytest.approx(1.0) and phase_mean_score(inner[..., 1]) == pytest.approx(1.0)


def test_pure_checkerboard_kernel_scores_one():
    assert kernel_checkerboard_score(np.array([[1.0, -1.0], [-1.0, 1.0]]), 2) == 1.0
    stripes = np.tile(np.array([[1.0, -1.0, 1.0, -1.0]]), (4, 1))[:, :, None, None] * np.ones((1, 1, 3, 2))
    assert kernel_checkerboard_score(stripes, 2) == pytest.approx(1.0)


def test_random_kernels_are_bounded_and_separate_k3_from_k4():
    """The score lies in [0, 1] and is not heavy-tailed.

    Kernels with a constant part (weights of mean 1, sd 1): the even-overlap k=4 nearly cancels
    its phases, the uneven k=3 keeps the 4:2:2:1 tap imbalance (its structural score is 0.436).
    Zero-mean kernels (as at initialisation) have independent phase sums: k=3 and k=4 both sit
    near sqrt(3/4) in expectation, i.e. both can show a checkerboard before training.
    """
    rng = np.random.default_rng(0)
    shifted = {k: np.array([kernel_checkerboard_score(rng.normal(1.0, 1.0, size=(k, k, 16, 16)), 2)
                            for _ in range(200)]) for k in (3, 4)}
    assert shifted[4].max() < 0.2 < 0.35 < shifted[3].min()
    assert np.median(shifted[3]) == pytest.approx(0.436, abs=0.03)
    centred = {k: np.array([kernel_checkerboard_score(rng.normal(size=(k, k, 16, 16)), 2) for _ in range(200)])
               for k in (3, 4)}
    for scores in centred.values():
        assert 0.0 <= scores.min() and scores.max() <= 1.0
        assert np.median(scores) == pytest.approx(np.sqrt(0.75), abs=0.05)
        assert np.percentile(scores, 90) - np.percentile(scores, 10) < 0.2


def test_resize_then_conv_is_a_balanced_transposed_kernel():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 3))
    h = resize_conv_kernel(w, 2)
    assert h.shape == (4, 4)
    assert kernel_checkerboard_score(h, 2) == 0.0
    assert kernel_checkerboard_score(resize_conv_kernel(rng.integers(-5, 6, size=(3, 3, 2, 4)), 2), 2) == 0.0
    assert kernel_checkerboard_score(resize_conv_kernel(rng.normal(size=(3, 3, 8, 4)), 4), 4) == 0.0
    assert resize_conv_kernel(np.ones((3, 3, 2, 4)), 2).shape == (4, 4, 4, 2)  # Conv2D in/out -> transposed out/in
    # Equivalence: nearest resize then full correlation with w == transposed conv with h (shifted by k-1).
    x = rng.normal(size=(5, 6))
    s, k = 2, 3
    u = np.kron(x, np.ones((s, s)))
    y = np.array([[np.sum(w * u[i : i + k, j : j + k]) for j in range(u.shape[1] - k + 1)]
                  for i in range(u.shape[0] - k + 1)])
    z = np.zeros(((x.shape[0] - 1) * s + h.shape[0], (x.shape[1] - 1) * s + h.shape[1]))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            z[i * s : i * s + h.shape[0], j * s : j * s + h.shape[1]] += x[i, j] * h
    np.testing.assert_allclose(y, z[k - 1 : k - 1 + y.shape[0], k - 1 : k - 1 + y.shape[1]], atol=1e-12)


def test_model_kernel_scores():
    from mammoseg.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("dilated_transpose", image_size=64, width=0.125, transpose_kernel=3)
    scores = model_kernel_scores(model)
    assert list(scores) == ["upsample_1", "upsample_4", "upsample_5"]
    assert scores["upsample_5"] == 0.0 and 0.0 < scores["upsample_1"] <= 1.0
    assert model_kernel_overlap(model)["upsample_1"] == {"taps_per_phase": [[4, 2], [2, 1]], "uneven": True}
    assert model_kernel_overlap(model)["upsample_4"]["uneven"] is False
    layer = model.get_layer("upsample_4")
    layer.kernel.assign(np.ones(layer.kernel.shape, dtype="float32"))
    assert model_kernel_scores(model)["upsample_4"] == 0.0
    layer = model.get_layer("upsample_1")
    layer.kernel.assign(np.ones(layer.kernel.shape, dtype="float32"))
    g = np.array([4.0, 2.0, 2.0, 1.0])
    assert model_kernel_scores(model)["upsample_1"] == pytest.approx(np.sqrt(g.var() / (g**2).mean()))


def test_at_init_study_and_cli(tmp_path):
    from mammoseg.evaluation.init_study import format_table, run_init_study
    from mammoseg.models.probes import checkerboard_scores
    from mammoseg.cli import cli
    from mammoseg.models import build_model

    result = run_init_study(["dilated_resize", "fcn_resize_mid"], image_size=128, width=0.25, seeds=2)
    variant = result["variants"]["dilated_resize"]
    assert set(variant["kernel"]) == {"upsample_4", "upsample_5"}
    assert variant["kernel"]["upsample_5"]["mean"] == 0.0
    assert variant["overlap"]["upsample_4"] == {"taps_per_phase": [[4, 4], [4, 4]], "uneven": False}
    assert set(variant["output"]) == {"constant", "smooth"}
    assert {"phase_mean", "aliasing_fraction", "period_4", "inner_max", "std"} <= set(variant["output"]["smooth"])
    assert len(variant["output"]["smooth"]["phase_mean"]["values"]) == 2
    assert variant["probe_layer"] == "up_conv2_relu"
    assert "dilated_resize" in format_table(result)

    model = build_model("dilated_resize", image_size=64, width=0.25)
    init = checkerboard_scores(model, "up_conv2")
    assert {"kernel", "overlap", "map"} <= set(init) and {"phase_mean", "aliasing_fraction"} <= set(init["map"])
    assert init["n_images"] == 2 and set(init["kernel"]) == {"upsample_4", "upsample_5"}
    assert init["upsampling"]["period"] == 32 and init["upsampling"]["probe_layer"] == "up_conv2_relu"

    out = tmp_path / "init.json"
    runner = CliRunner()
    res = runner.invoke(cli, ["-q", "checkerboard", "--at-init", "--image-size", "64", "--width", "0.25",
                              "--seeds", "1", "--variant", "dilated_transpose", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "dilated_transpose" in res.output
    assert "upsample_1" in json.loads(out.read_text())["variants"]["dilated_transpose"]["kernel"]
    res = runner.invoke(cli, ["variants", "--image-size", "64", "--width", "0.125"])
    assert res.exit_code == 0 and "dilated_resize" in res.output and "2x2x64" in res.output
    assert "multiple of 128" in res.output
