"""Checkerboard measures on constructed kernels and maps, and the at-init study on tiny models."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from mammoseg.analysis.checkerboard import (
    activation_scores,
    aliasing_energy_fraction,
    aliasing_peak_db,
    kernel_phase_imbalance,
    kernel_phase_sums,
    map_scores,
    model_kernel_scores,
    period_scores,
    phase_mean_score,
    phase_means,
    radial_power_spectrum,
    resize_conv_kernel,
)

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


def test_activation_scores_per_channel():
    act = np.stack([CHECKER, -CHECKER, SMOOTH], axis=-1)
    scores = activation_scores(act)
    assert scores["phase_mean"] < 1e-10  # the channel mean cancels the two opposite checkerboards
    assert scores["phase_mean_channel_median"] == pytest.approx(1.0)


def test_kernel_even_overlap_constant_weights_is_zero():
    assert kernel_phase_imbalance(np.ones((4, 4, 8, 3)), 2) == 0.0
    assert kernel_phase_imbalance(np.random.default_rng(0).normal(size=(3, 3, 4, 4)), 1) == 0.0


def test_kernel_uneven_overlap_is_positive():
    # k=3, s=2: phases receive 4, 2, 2 and 1 taps.
    assert kernel_phase_sums(np.ones((3, 3)), 2).tolist() == [[4.0, 2.0], [2.0, 1.0]]
    g = np.array([4.0, 2.0, 2.0, 1.0])
    assert kernel_phase_imbalance(np.ones((3, 3, 2, 2)), 2) == pytest.approx(g.std() / g.mean())
    assert kernel_phase_imbalance(np.ones((3, 3)), 2) > 0.4


def test_kernel_without_dc_response_is_infinite():
    assert kernel_phase_imbalance(np.array([[1.0, -1.0], [-1.0, 1.0]]), 2) == float("inf")
    assert kernel_phase_imbalance(np.zeros((4, 4)), 2) == 0.0


def test_resize_then_conv_is_a_balanced_transposed_kernel():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 3))
    h = resize_conv_kernel(w, 2)
    assert h.shape == (4, 4)
    assert kernel_phase_imbalance(h, 2) == 0.0
    assert kernel_phase_imbalance(resize_conv_kernel(rng.integers(-5, 6, size=(3, 3, 2, 4)), 2), 2) == 0.0
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
    assert scores["upsample_5"] == 0.0 and scores["upsample_1"] > 0.0
    layer = model.get_layer("upsample_4")
    layer.kernel.assign(np.ones(layer.kernel.shape, dtype="float32"))
    assert model_kernel_scores(model)["upsample_4"] == 0.0
    layer = model.get_layer("upsample_1")
    layer.kernel.assign(np.ones(layer.kernel.shape, dtype="float32"))
    assert model_kernel_scores(model)["upsample_1"] == pytest.approx(np.std([4, 2, 2, 1]) / np.mean([4, 2, 2, 1]))


def test_at_init_study_and_cli(tmp_path):
    from mammoseg.analysis.init_study import checkerboard_at_init, format_table, run_init_study
    from mammoseg.cli import cli
    from mammoseg.models import build_model

    result = run_init_study(["dilated_resize", "fcn_resize_mid"], image_size=128, width=0.25, seeds=2)
    variant = result["variants"]["dilated_resize"]
    assert set(variant["kernel"]) == {"upsample_4", "upsample_5"}
    assert variant["kernel"]["upsample_5"]["mean"] == 0.0
    assert set(variant["output"]) == {"constant", "smooth"}
    assert {"phase_mean", "aliasing_fraction", "period_4", "inner_max", "std"} <= set(variant["output"]["smooth"])
    assert len(variant["output"]["smooth"]["phase_mean"]["values"]) == 2
    assert variant["probe_layer"] == "up_conv2_relu"
    assert "dilated_resize" in format_table(result)

    init = checkerboard_at_init(build_model("dilated_resize", image_size=64, width=0.25))
    assert set(init) == {"kernel", "map"} and {"phase_mean", "aliasing_fraction"} <= set(init["map"])

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
