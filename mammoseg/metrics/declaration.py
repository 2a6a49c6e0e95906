"""A metric is declared once: what it is called, which way is better, its range, the images it is about,
whether it is a per-image column or a per-run number, and the margin within which two designs count as
equivalent. Evaluation writes the per-image columns and their means from these declarations, the run
folder's per_image.csv schema is their columns, and the report's rows, summary.csv and the claims read
them by key (docs/design.md, "How to add a metric").

The image subsets are defined here and nowhere else (`in_subset`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from mammoseg.core.errors import MammosegError
from mammoseg.metrics.stats import UNBOUNDED, Bounds, nanmean_ci, pooled_ci

SUBSETS = ("all", "positives", "negatives", "normals")
"""positives: the truth mask has an abnormal pixel; negatives: it has none and the image is a tile of an
image with abnormalities (kind positive/negative/whole); normals: whole mammograms without abnormality
from another collection (kind `normal`), never counted among the negatives; all: every image."""
NORMAL_KIND = "normal"
SOURCE_CONFOUND = ("the normal images come from another collection than the abnormal ones (`prepare --normals`): "
                   "scanner, film and processing alone can tell them apart, so a contrast of normal with abnormal "
                   "images can reflect the source, and no claim rests on that contrast alone")
"""Said beside every measure on the normal images."""
SOURCES = ("image", "run", "exact")
"""image: from per-image columns (one value per run, their mean over the subset or one pooled confusion
matrix); run: one number per run from a run file or the run itself; exact: the same for every seed."""
RUN_FILES = ("metrics", "config", "timing", "checkerboard_init")
"""The run files a `path` names: eval/<split>/metrics.json, config.json, timing.json, checkerboard_init.json."""
IDENTITY_COLUMNS = ("example_id", "kind", "patient_id", "positive_fraction")
CONFUSION_COLUMNS = ("dice", "iou", "tp", "fp", "fn", "tn", "max_prob", "mean_prob", "frac_above_05",
                     "predicted_positive")
"""per_image.csv's fixed columns: who the image is, then the confusion counts at P > 0.5 (`ImageStats.as_row`)."""


class UnknownMetric(MammosegError, KeyError):
    """A metric key nobody declared: a misspelling is an error, never a silent NaN."""

    def __str__(self) -> str:
        return str(self.args[0])


def in_subset(subset: str, positive: Any, normal: Any) -> Any:
    """Whether images (bools or boolean arrays: truth not empty, kind normal) belong to `subset`."""
    if subset == "all":
        return np.ones_like(np.asarray(positive, dtype=bool)) if np.ndim(positive) else True
    if subset == "positives":
        return positive
    if subset == "negatives":
        return ~np.asarray(positive, dtype=bool) & ~np.asarray(normal, dtype=bool) if np.ndim(positive) \
            else not positive and not normal
    if subset == "normals":
        return normal
    raise UnknownMetric(f"unknown image subset {subset!r}; known: {', '.join(SUBSETS)}")


@dataclass(frozen=True)
class ImageMaps:
    """One evaluated image, what a per-image metric may read: the network input (H, W), P(abnormal), the
    logit margin l1 − l0, the truth mask, its kind, and the run's operating point on the margin (NaN when
    the validation split could not choose one)."""

    image: np.ndarray
    prob: np.ndarray
    margin: np.ndarray
    mask: np.ndarray
    kind: str = ""
    threshold: float = math.nan
    circle: bool = False

    @cached_property
    def map_scores(self) -> dict[str, float]:
        """The checkerboard scores of P(abnormal), computed once for the columns that share them."""
        from mammoseg.metrics.checkerboard import map_scores

        return map_scores(self.prob)

    @cached_property
    def detections(self) -> Any:
        """The image's lesion candidates matched to its lesions (`detection.detect`), found once."""
        from mammoseg.metrics.detection import detect

        return detect(self.margin, self.mask, self.circle)


@dataclass(frozen=True)
class Metric:
    """One declared measure (see the module docstring). A per-image metric either computes its own column
    (`per_image`, written under `column`, default its key) or reads columns another metric writes
    (`columns`); `pooled` ("dice" | "iou") sums tp/fp/fn over the subset instead of averaging. A run metric
    reads `path` ("<run file>:<dotted key>", exact, divided by `scale`) or computes `value(run)`.
    `equivalence_margin`: the difference on the metric's own scale below which two designs count as the
    same (None: no equivalence is tested on it)."""

    key: str
    label: str
    group: str
    better: str  # "higher" | "lower"
    source: str  # see SOURCES
    subset: str = "all"
    bounds: Bounds = UNBOUNDED
    fmt: str = "{:.3f}"
    equivalence_margin: float | None = None
    per_image: Callable[[ImageMaps], float] | None = field(default=None, compare=False)
    column: str = ""
    columns: tuple[str, ...] = ()
    pooled: str = ""
    path: str = ""
    scale: float = 1.0
    value: Callable[[Any], float] | None = field(default=None, compare=False)

    @property
    def reads(self) -> tuple[str, ...]:
        """The per-image columns an image metric is computed from."""
        return self.columns or ((self.column or self.key),)

    @property
    def run_file(self) -> tuple[str, str]:
        file, _, key = self.path.partition(":")
        return file, key


class _Registry(Mapping[str, Metric]):
    """Metrics by key, in declaration order; an unknown key raises UnknownMetric naming the near misses."""

    def __init__(self) -> None:
        self._by_key: dict[str, Metric] = {}

    def __getitem__(self, key: str) -> Metric:
        try:
            return self._by_key[key]
        except KeyError:
            near = difflib.get_close_matches(str(key), self._by_key, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UnknownMetric(f"unknown metric {key!r}{hint}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def add(self, metric: Metric) -> None:
        self._by_key[metric.key] = metric

    def remove(self, key: str) -> None:
        self._by_key.pop(key, None)


METRIC_BY_KEY = _Registry()
COLUMNS: dict[str, Callable[[ImageMaps], float]] = {}
"""per_image.csv's computed columns, in declaration order: name -> the function that fills it."""


def declare(metric: Metric) -> Metric:
    """Add a metric (and the per-image column it computes) to the registry; a clear error for a declaration
    that could not be reported: a clashing key, a wrong direction, scope or subset, no way to get a value."""
    problems = []
    if metric.key in METRIC_BY_KEY:
        problems.append("key already declared")
    if metric.better not in ("higher", "lower"):
        problems.append(f"better must be 'higher' or 'lower', got {metric.better!r}")
    if metric.source not in SOURCES:
        problems.append(f"source must be one of {', '.join(SOURCES)}, got {metric.source!r}")
    if metric.subset not in SUBSETS:
        problems.append(f"subset must be one of {', '.join(SUBSETS)}, got {metric.subset!r}")
    if metric.source == "image" and metric.per_image is None and not all(c in per_image_columns() for c in metric.reads):
        problems.append(f"reads per-image column(s) nobody writes: {', '.join(metric.reads)}")
    if metric.source != "image" and (metric.value is None) == (not metric.path):
        problems.append("a run metric needs exactly one of path and value")
    if metric.path and metric.run_file[0] not in RUN_FILES:
        problems.append(f"path must start with one of {', '.join(f + ':' for f in RUN_FILES)}")
    name = metric.column or metric.key
    if metric.per_image is not None and name in COLUMNS and COLUMNS[name] is not metric.per_image:
        problems.append(f"column {name!r} is already computed by another declaration")
    if problems:
        raise MammosegError(f"metric {metric.key!r}: {'; '.join(problems)}")
    if metric.per_image is not None:
        COLUMNS[name] = metric.per_image
    METRIC_BY_KEY.add(metric)
    return metric


def forget(key: str) -> None:
    """Remove a declared metric and the column it computes (a test's own metric, once the test is done)."""
    metric = METRIC_BY_KEY._by_key.get(key)
    if metric is not None and metric.per_image is not None:
        COLUMNS.pop(metric.column or metric.key, None)
    METRIC_BY_KEY.remove(key)


def metrics() -> tuple[Metric, ...]:
    """Every declared metric, in declaration order (the report's order)."""
    return tuple(METRIC_BY_KEY.values())


def per_image_columns() -> tuple[str, ...]:
    """per_image.csv's columns: identity, confusion counts, then every computed column in declaration order."""
    return (*IDENTITY_COLUMNS, *CONFUSION_COLUMNS, *COLUMNS)


def image_columns(maps: ImageMaps) -> dict[str, float]:
    """Every computed per-image column of one image."""
    return {name: float(compute(maps)) for name, compute in COLUMNS.items()}


def image_metric_value(metric: Metric, table: Mapping[str, np.ndarray], keep: np.ndarray) -> float:
    """One run's value of an image metric from its per-image columns, on the images `keep` selects
    (already restricted to the metric's subset): the NaN-aware mean, or Dice/IoU of the summed counts."""
    if metric.pooled:
        tp, fp, fn = (np.asarray(table[c], float)[keep] for c in ("tp", "fp", "fn"))
        return pooled_ci(tp, fp, fn, metric.pooled, resample=False).estimate
    return nanmean_ci(np.asarray(table[metric.reads[0]], float)[keep], resample=False).estimate
