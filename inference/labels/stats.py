"""What a label store holds: counts by task, source and annotator, and how far annotators agree.

Agreement is Cohen's kappa (``sklearn.metrics.cohen_kappa_score``, unweighted) per task and pair of
annotators, over the images both gave a class (an "unknown" is an abstention and does not count),
with the number of those images. Only labels count (what a person confirmed), never suggestions.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations

from inference.formats import TASK_CLASSES, TASKS
from inference.labels.records import LabelRecord, is_label

__all__ = ["Agreement", "StoreStats", "store_stats", "format_stats"]


@dataclass(frozen=True)
class Agreement:
    """Two annotators on one task: Cohen's kappa over the ``images`` both labelled with a class
    (NaN where it is undefined: fewer than two images, or both always gave the same one class)."""

    task: str
    first: str
    second: str
    images: int
    kappa: float
    agreed: int


@dataclass(frozen=True)
class StoreStats:
    labels: int
    suggestions: int
    model_suggestions: int
    by_task: dict[str, tuple[int, int]] = field(default_factory=dict)  # task -> (labels, suggestions)
    by_source: dict[str, int] = field(default_factory=dict)
    by_annotator: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (labels, suggestions)
    agreement: tuple[Agreement, ...] = ()
    images: int = 0


def _kappa(first: list[str], second: list[str], classes: tuple[str, ...]) -> float:
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    if len(first) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(cohen_kappa_score(first, second, labels=list(classes)))


def store_stats(records: Iterable[LabelRecord]) -> StoreStats:
    """Counts and agreement of a store's current records (``LabelStore.labels()``)."""
    records = list(records)
    by_task: dict[str, list[int]] = {}
    by_annotator: dict[str, list[int]] = {}
    by_source: Counter[str] = Counter()
    values: dict[tuple[str, str], dict[str, str]] = {}  # (task, annotator) -> key -> class
    n_labels = n_model = 0
    for r in records:
        label = is_label(r.status, r.source)
        n_labels += label
        n_model += r.source == "model" and not label
        by_task.setdefault(r.task, [0, 0])[0 if label else 1] += 1
        by_annotator.setdefault(r.annotator, [0, 0])[0 if label else 1] += 1
        by_source[r.source if label else f"{r.source} (suggested)"] += 1
        if label and r.value is not None:
            values.setdefault((r.task, r.annotator), {})[r.key] = r.value
    agreement = []
    for task in TASKS:
        names = sorted(a for t, a in values if t == task)
        for a, b in combinations(names, 2):
            va, vb = values[(task, a)], values[(task, b)]
            both = sorted(set(va) & set(vb))
            if not both:
                continue
            first, second = [va[k] for k in both], [vb[k] for k in both]
            agreed = sum(x == y for x, y in zip(first, second, strict=True))
            agreement.append(Agreement(task, a, b, len(both), _kappa(first, second, TASK_CLASSES[task]), agreed))
    order = {t: i for i, t in enumerate(TASKS)}
    return StoreStats(
        labels=n_labels,
        suggestions=len(records) - n_labels,
        model_suggestions=n_model,
        by_task={t: (v[0], v[1]) for t, v in sorted(by_task.items(), key=lambda kv: order.get(kv[0], len(order)))},
        by_source=dict(sorted(by_source.items())),
        by_annotator={a: (v[0], v[1]) for a, v in sorted(by_annotator.items())},
        agreement=tuple(agreement),
        images=len({r.key for r in records}),
    )


def format_stats(stats: StoreStats) -> str:
    """The stats as plain text tables (what ``python -m inference labels stats`` prints)."""
    lines = [
        f"{stats.labels} label(s) confirmed by people, {stats.suggestions} suggestion(s)"
        f" ({stats.model_suggestions} of them the model's, never labels) on {stats.images} image(s)",
        "",
        f"{'task':<14}{'labels':>8}{'suggestions':>13}",
    ]
    lines += [f"{t:<14}{n:>8}{s:>13}" for t, (n, s) in stats.by_task.items()]
    lines += ["", f"{'source':<26}{'count':>7}"]
    lines += [f"{src:<26}{n:>7}" for src, n in stats.by_source.items()]
    lines += ["", f"{'annotator':<26}{'labels':>8}{'suggestions':>13}"]
    lines += [f"{a:<26}{n:>8}{s:>13}" for a, (n, s) in stats.by_annotator.items()]
    lines += ["", "Agreement between annotators (Cohen's kappa over the images both labelled)"]
    if not stats.agreement:
        lines.append("  none: no two annotators labelled the same task of the same image")
    else:
        lines.append(f"{'task':<12}{'annotator A':<18}{'annotator B':<18}{'images':>7}{'agree':>7}{'kappa':>8}")
        for g in stats.agreement:
            kappa = "n/a" if math.isnan(g.kappa) else f"{g.kappa:.3f}"
            lines.append(f"{g.task:<12}{g.first:<18}{g.second:<18}{g.images:>7}{g.agreed:>7}{kappa:>8}")
    return "\n".join(lines) + "\n"
