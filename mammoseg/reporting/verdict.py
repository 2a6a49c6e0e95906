"""The verdict in words: the at-a-glance answer, the primary comparisons, the exploratory leads.

A report has one confirmatory family. Where the article's claims apply they are that family, and the
differences from the baseline on the primary metrics are exploratory like everything else; otherwise
a primary comparison can be a claim (bold), and only when its Holm-adjusted p-value is below 5%.
Every other metric is ranked by its intervals over seeds and called a lead to check at most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mammoseg.evaluation.evaluate import GATE_RULE
from mammoseg.metrics.stats import NAN_INTERVAL, Interval
from mammoseg.reporting.aggregate import Arm, claimed
from mammoseg.reporting.registry import DEFAULT_PRIMARY, METRIC_BY_KEY, VERDICT_KEYS, Metric


def fmt(metric: Metric, value: float) -> str:
    """A value in the metric's format; "n/a" when not measured, never "-0.000"."""
    if not math.isfinite(value):
        return "n/a"
    text = metric.fmt.format(value)
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def fmt_interval(metric: Metric, interval: Interval) -> str:
    """"estimate [low, high]", or the estimate alone when there is no interval (or none is needed)."""
    if not interval.defined:
        return fmt(metric, interval.estimate)
    if metric.source == "exact":
        return fmt(metric, interval.estimate)
    return f"{fmt(metric, interval.estimate)} [{fmt(metric, interval.low)}, {fmt(metric, interval.high)}]"


def fmt_p(p: float) -> str:
    """A p-value to three decimals, "< 0.001" below that."""
    return "n/a" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


@dataclass(frozen=True)
class Ranking:
    """How one metric ranks the arms by their intervals over seeds: status "best" (one arm clears all
    others), "group" (several arms tie but clear all the rest), "tie", "unranked" (no interval over
    seeds to judge by) or "none" (fewer than two arms have the number). Exploratory: no correction for
    the many metrics ranked, so a lead is a lead, not a claim."""

    status: str
    leaders: tuple[str, ...]
    sentence: str


def rank(metric: Metric, intervals: dict[str, Interval]) -> Ranking:
    """Name a leader only if its interval over seeds clears every other arm's interval."""
    present = {name: iv for name, iv in intervals.items() if math.isfinite(iv.estimate)}
    head = f"Exploratory, {metric.label}"
    if len(present) < 2:
        return Ranking("none", (), f"{head}: fewer than two compared arms have this number; nothing to compare.")
    sign = -1.0 if metric.better == "higher" else 1.0
    order = sorted(present, key=lambda name: sign * present[name].estimate)
    best = order[0]
    if not all(iv.defined for iv in present.values()):
        return Ranking("unranked", (best,), (
            f"{head}: not ranked — an arm with one seed has no interval over seeds "
            f"(point leader {best}, {fmt(metric, present[best].estimate)})."))
    tied = [name for name in order if present[name].overlaps(present[best])]
    direction = "higher" if metric.better == "higher" else "lower"
    if metric.source == "exact" and len(tied) > 1:
        return Ranking("tie", tuple(tied), f"{head}: {', '.join(tied)} are equal "
                                           f"({fmt(metric, present[best].estimate)}).")
    if len(tied) == 1 and metric.source == "exact":
        return Ranking("best", (best,), (
            f"{head} ({direction} is better): {best}, {fmt(metric, present[best].estimate)} vs next {order[1]} "
            f"{fmt(metric, present[order[1]].estimate)} (a property of the design, the same for every seed)."))
    if len(tied) == 1:
        runner = order[1]
        return Ranking("best", (best,), (
            f"{head} ({direction} is better): {best} leads, {fmt_interval(metric, present[best])} vs next "
            f"{runner} {fmt_interval(metric, present[runner])}; the 95% intervals do not overlap "
            f"(a lead to check, not a claim)."))
    rest = [name for name in order if name not in tied]
    separated = bool(rest) and all(not present[r].overlaps(present[t]) for r in rest for t in tied)
    tail = f" All of them lead {', '.join(rest)} (a lead to check, not a claim)." if separated else ""
    return Ranking("group" if separated else "tie", tuple(tied), (
        f"{head} ({direction} is better): no clear difference between {', '.join(tied)} "
        f"(their 95% intervals overlap; point leader {best}).{tail}"))


def rank_arms(metric: Metric, arms: list[Arm]) -> Ranking:
    """Ranking of the arms that learned, by their intervals over seeds."""
    return rank(metric, {arm.name: arm.cells[metric.key].seed_interval for arm in arms if arm.learned})


def _claim_words(metric: Metric, arm: str, baseline: str, diff: Interval) -> str:
    """'A has a lower X than B' for a difference A − B."""
    return f"{arm} has a {'higher' if diff.estimate > 0 else 'lower'} {metric.label} than {baseline}"


CLAIMS_CONFIRM = "the article's claims are this report's confirmatory tests"


def primary_sentence(metric: Metric, arm: Arm, baseline: Arm, n_family: int, confirmatory: bool = True) -> str:
    """A primary comparison in words: a claim only when it is in the confirmatory family and its
    Holm-adjusted p-value is below 5%; otherwise exploratory, with its unadjusted p-value."""
    diff = arm.paired.get(metric.key, NAN_INTERVAL)
    head = "Primary" if confirmatory else "Exploratory"
    text = f"{head}, {metric.label}: {arm.name} − {baseline.name}: {fmt_interval(metric, diff)}"
    if not (arm.learned and baseline.learned):
        return f"{text} — not compared (a run that did not learn is left out of every claim)."
    if not diff.defined:
        one_seed = min(len(arm.counted), len(baseline.counted)) < 2
        why = "one seed: seed variation unknown" if one_seed else "every run of both arms agrees: no spread to judge by"
        return f"{text} — not estimable ({why})."
    if not confirmatory:
        return f"{text}, p = {fmt_p(diff.p_value)} unadjusted — no claim ({CLAIMS_CONFIRM})."
    p, adjusted = fmt_p(diff.p_value), fmt_p(arm.adjusted.get(metric.key, math.nan))
    stated = f"p = {p}, Holm-adjusted over {n_family} primary comparisons {adjusted}"
    if claimed(arm, metric.key):
        better = (diff.estimate > 0) == (metric.better == "higher")
        return (f"{text}, {stated} — **{_claim_words(metric, arm.name, baseline.name, diff)}** "
                f"({'better' if better else 'worse'}).")
    return f"{text}, {stated} — no claim."


def at_a_glance(arms: list[Arm], base: Arm | None, primary: Sequence[str], confirmatory: bool = True) -> str:
    """One sentence: what is claimed on the primary metrics, and why nothing is where nothing is."""
    failed = [a.name for a in arms if not a.learned]
    parts = []
    if failed:
        parts.append(f"{', '.join(failed)} did not learn and {'is' if len(failed) == 1 else 'are'} left out")
    labels = ", ".join(METRIC_BY_KEY[k].label for k in primary)
    learned = [a for a in arms if a.learned]
    if learned and all(len(a.counted) == 1 for a in learned):
        parts.append("one seed per arm: seed variation cannot be estimated, so no claim about designs is made")
    elif not confirmatory:
        parts.append(f"{CLAIMS_CONFIRM} (below); the differences from the baseline are exploratory")
    elif base is None:
        parts.append("no baseline arm: no comparison is made")
    elif not base.learned:
        parts.append(f"the baseline {base.name} did not learn: no comparison is made")
    else:
        claims = [_claim_words(METRIC_BY_KEY[k], a.name, base.name, a.paired[k])
                  for a in arms if a is not base for k in primary if claimed(a, k)]
        parts += [f"**{c}**" for c in claims] or [f"no difference from {base.name} is claimed on the primary "
                                                  f"metrics ({labels})"]
    return "At a glance: " + "; ".join(parts) + "."


@dataclass(frozen=True)
class Verdict:
    """The verdict's lines by weight: the at-a-glance answer; the findings (runs that did not learn, the
    learning gate, the primary comparisons); the exploratory leads, which are things to check."""

    glance: str
    findings: tuple[str, ...]
    exploratory: tuple[str, ...]

    @property
    def lines(self) -> list[str]:
        return [self.glance, *self.findings, *self.exploratory]


def verdict(arms: list[Arm], base: Arm | None, primary: Sequence[str] = DEFAULT_PRIMARY,
            confirmatory: bool = True) -> Verdict:
    """Everything the report says about the comparison, in words; `confirmatory`: the primary comparisons
    are the report's confirmatory family (False where the article's claims are)."""
    findings = []
    for arm in arms:
        if arm.failed:
            seeds = ", ".join(str(r.seed) for r in arm.failed)
            scope = "the whole arm is" if not arm.learned else "those runs are"
            findings.append(f"Did not learn: {arm.name} (seed {seeds}) — {scope} left out of every claim.")
    if any(arm.failed for arm in arms):
        findings.append(f"Learning gate: {GATE_RULE}.")
    if base is not None:
        family = sum(math.isfinite(a.paired.get(k, NAN_INTERVAL).p_value) for a in arms if a is not base for k in primary)
        for key in primary:
            findings += [primary_sentence(METRIC_BY_KEY[key], arm, base, family, confirmatory)
                         for arm in arms if arm is not base]
    rankings = [rank_arms(METRIC_BY_KEY[key], arms) for key in VERDICT_KEYS if key not in primary]
    exploratory = [r.sentence for r in rankings if r.status != "none"]
    uncompared = [METRIC_BY_KEY[key].label for key, r in zip((k for k in VERDICT_KEYS if k not in primary), rankings)
                  if r.status == "none"]
    if uncompared:
        exploratory.append(f"Not compared (fewer than two arms that learned have the number): {', '.join(uncompared)}.")
    return Verdict(at_a_glance(arms, base, primary, confirmatory), tuple(findings), tuple(exploratory))
