"""What ``camtrap-cloud train`` says: the console text, ``report.json`` and ``confusion.png``.

Every figure names the part it was measured on; when validation doubles as test, that name
says "(optimistic)": its threshold was set on the very events it is judged on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["confusion_png", "report_text", "write_report"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _filter_line(who: str, figures: dict[str, Any]) -> str:
    threshold = figures["threshold"]
    shown = "none (nothing called blank)" if threshold is None else f"{threshold:.4f}"
    return (
        f"  {who:<8} AUC {_num(figures['auc'])}  threshold {shown}  blanks removed "
        f"{figures['removed_blank']}/{figures['n_blank']} ({_pct(figures['blanks_removed'])})  "
        f"recall {figures['kept_not_blank']}/{figures['n_not_blank']} "
        f"({_pct(figures['recall'])})"
    )


def report_text(report: dict[str, Any]) -> str:
    split, blank = report["split"], report["blank_filter"]
    lines = [
        f"head {report['head']} over {report['backbone']['name']}@"
        f"{report['backbone']['version']}; serving model {report['serving']}",
        f"source: {report['source']}; events: {report['event_rule']}",
        f"images: {report['images']['labelled']} labelled, {report['images']['embedded_now']} "
        f"embedded now, {report['images']['from_cache']} from the cache, "
        f"{report['images']['unreadable']} unreadable",
    ]
    lines += [f"left out: {n} {why}" for why, n in sorted(report["left_out"].items())]
    lines.append(f"split: {split['rule']} (seed {split['seed']}); groups {split['groups']}")
    lines.append(
        f"{'class':<28}{'kind':<9}{'train':>7}{'used':>6}{'valid':>7}{'test':>6}"
        f"{'precision':>11}{'recall':>8}"
    )
    for c in report["classes"]:
        n = c["n"]
        lines.append(
            f"{c['display'][:27]:<28}{c['kind']:<9}{n['train']:>7}{n['train_used']:>6}"
            f"{n['validation']:>7}{n['test']:>6}{_pct(c['precision']):>11}{_pct(c['recall']):>8}"
        )
    lines += [
        f"class left out (fewer than {report['fit']['min_per_class']} training photos): "
        f"{name} ({n})"
        for name, n in sorted(report["too_small"].items())
    ]
    lines.append(
        f"blank filter, events of the {blank['measured_on']}, threshold for target recall "
        f"{blank['target_recall']:g} calibrated on the validation part:"
    )
    lines.append(_filter_line("head", blank["head"]))
    lines.append(_filter_line("serving", blank["serving"]))
    fit = report["fit"]
    lines.append(
        f"fit: {fit['seconds']:.2f} s, C={fit['c']:g}, {fit['iterations']} iterations"
        + ("" if fit["converged"] else " (did not converge)")
        + f", {fit['weights']} weights"
    )
    lines.append(
        f"verdict: {report['verdict']}"
        + (f" ({'; '.join(report['worse'])})" if report["worse"] else "")
    )
    if report.get("pack"):
        lines.append(f"pack: {report['pack']['path']} ({report['pack']['bytes']} bytes)")
    return "\n".join(lines)


def confusion_png(path: Path, matrix: np.ndarray, names: Sequence[str], title: str) -> Path:
    k = len(names)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * k + 2.5), max(4.0, 0.5 * k + 2.0)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), [n[:20] for n in names], rotation=45, ha="right")
    ax.set_yticks(range(k), [n[:20] for n in names])
    ax.set_xlabel("head's top class (frames)")
    ax.set_ylabel("reviewed class (frames)")
    peak = matrix.max() if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        colour = "white" if peak and value > peak / 2 else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    directory: Path, report: dict[str, Any], matrix: np.ndarray, names: Sequence[str]
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    title = f"{report['head']}: {report['blank_filter']['measured_on']}"
    return json_path, confusion_png(directory / "confusion.png", matrix, names, title)
