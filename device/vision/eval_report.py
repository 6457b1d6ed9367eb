"""The text and the precision/recall plot of ``camtrap eval --events`` and of its splits."""

from __future__ import annotations

from pathlib import Path

from device.vision.calibration import Outcome, Scored, outcome_at
from device.vision.event_eval import EventReport, SplitReport
from device.vision.metrics import DESCRIPTIVE_RECALLS, LevelFigures


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _with_ci(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or interval is None:
        return "n/a"
    return f"{value * 100:5.1f}% [{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]"


def _recall(o: Outcome) -> str:
    return f"{_with_ci(o.recall, o.recall_interval)} ({o.kept_not_blank}/{o.n_not_blank})"


def _removed(o: Outcome) -> str:
    return (
        f"{_with_ci(o.blanks_removed, o.blanks_removed_interval)} ({o.removed_blank}/{o.n_blank})"
    )


def _level_row(fig: LevelFigures) -> str:
    o = fig.at_threshold
    auc = "n/a" if fig.auc is None else f"{fig.auc:.3f}"
    return (
        f"{fig.level:<7}{o.n_not_blank:>9} / {o.n_blank:<7}{_recall(o):<32}"
        f"{_removed(o):<32}{auc:>6}"
    )


def format_event_report(report: EventReport, per_event: bool = True) -> str:
    frames = sum(len(e.frames) for e in report.events)
    lines = [
        f"threshold in force: {report.threshold.describe()}",
        "  (blank when blank_score >= threshold)",
        f"events: {len(report.events)} from {frames} frames at {len(report.sites)} site(s); "
        f"events by {report.grouping}; sites: {report.site_rule} "
        "(learnt state reset between sites)",
        "",
        f"{'level':<7}{'not blank / blank':<19}{'recall [95% CI]':<32}"
        f"{'blanks removed [95% CI]':<32}{'AUC':>6}",
        _level_row(report.frame),
        _level_row(report.event),
    ]
    if report.frame.errors or report.event.errors:
        lines.append(
            f"not scored: {report.frame.errors} frame(s), {report.event.errors} event(s) "
            "(unreadable; listed below)"
        )
    lines += [
        "",
        "blanks removed at recall >= "
        + " / ".join(f"{r:g}" for r in DESCRIPTIVE_RECALLS)
        + " (descriptive points of THIS set, not thresholds)",
    ]
    for fig in (report.frame, report.event):
        lines.append(
            f"{fig.level:<7}" + " / ".join(_pct(fig.descriptive[r]) for r in DESCRIPTIVE_RECALLS)
        )
    if report.breakdown and (report.frame.breakdown or report.event.breakdown):
        lines += ["", f"per {report.breakdown} (at the threshold in force)"]
        for fig in (report.frame, report.event):
            for value, o in fig.breakdown.items():
                lines.append(
                    f"  {fig.level:<6}{value:<16} recall {_recall(o):<32} "
                    f"blanks removed {_removed(o)}"
                )
    if per_event:
        lines += ["", "per event (truth: not blank when any frame is)"]
        for e in report.events:
            truth = "not blank" if e.not_blank else "blank"
            if e.score is None:
                verdict = f"ERROR {e.error}"
            else:
                verdict = f"score={e.score:.3f} -> {'blank' if e.is_blank else 'kept'}"
            lines.append(
                f"  {e.event_id} [{e.site}] truth={truth} {verdict} ({e.observation_type})"
            )
            for f in e.frames:
                shown = f"ERROR {f.error}" if f.score is None else f"{f.score:.3f}"
                lines.append(f"      {f.key}: {f.label} {shown}")
    return "\n".join(lines)


def format_split(split: SplitReport) -> str:
    lines = [
        f"leave-one-{split.column}-out: each {split.column} is scored at the threshold "
        f"calibrated ({split.level} level, target recall {split.target_recall:g}) on the others",
    ]
    for fold in split.folds:
        m = fold.calibration.measured_on
        lines += [
            f"  {split.column}={fold.group}: calibrated on {m.n_not_blank} not blank / "
            f"{m.n_blank} blank {m.level}s -> threshold {fold.threshold.shown}"
            + (
                f" ({fold.threshold.point.reason})"
                if fold.threshold.point is not None and fold.threshold.point.reason
                else ""
            ),
            f"      held out: frame recall {_recall(fold.frame)}, blanks removed "
            f"{_removed(fold.frame)}",
            f"                event recall {_recall(fold.event)}, blanks removed "
            f"{_removed(fold.event)}",
        ]
    frame, event = split.pooled_frame, split.pooled_event
    if frame is not None and event is not None:
        lines += [
            "pooled held-out figures:",
            f"  frame  recall {_recall(frame)}, blanks removed {_removed(frame)}",
            f"  event  recall {_recall(event)}, blanks removed {_removed(event)}",
        ]
    return "\n".join(lines)


def _curve(items: list[Scored]) -> list[tuple[float, float]]:
    """(recall, precision) of the not-blank decision at every threshold that keeps something."""
    points = []
    for t in sorted({i.score for i in items}, reverse=True):
        o = outcome_at(items, t + 1e-9)  # keep everything scoring at or below t
        kept = o.kept_not_blank + (o.n_blank - o.removed_blank)
        if o.recall is not None and kept:
            points.append((o.recall, o.kept_not_blank / kept))
    return points


def plot_levels(report: EventReport, out: Path) -> None:
    """Precision/recall curves, frame and event level, with the threshold in force marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=100)
    for figures, colour in ((report.frame, "tab:blue"), (report.event, "tab:orange")):
        pts = _curve(figures.items)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", color=colour,
                    label=f"{figures.level} (n={len(figures.items)})")  # fmt: skip
        here = figures.at_threshold
        kept = here.kept_not_blank + (here.n_blank - here.removed_blank)
        if here.recall is not None and kept:
            ax.scatter([here.recall], [here.kept_not_blank / kept], color=colour,
                       edgecolors="black", zorder=3, s=60)  # fmt: skip
    ax.set_xlabel("recall (not-blank kept)")
    ax.set_ylabel("precision (kept that are not blank)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"blank filter; dots: threshold in force {report.threshold.shown}", fontsize=9)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
