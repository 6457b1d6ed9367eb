"""Event-level evaluation: labelled bursts run through the agent's own per-event path.

Each event's frames go to ``classify_event`` with the analysis plane a camera makes for them
(the whole field of view as luma at the lores size, ``device.hardware.scene.lores_luma``, by way
of ``device.vision.evaluate``, the one module the import contract lets reach the hardware
room), so motion between
frames, the learnt background and the event decision all count. After each event the
background and the site memory learn exactly when the agent's worker would let them
(``engine.shows_empty_scene`` and ``remember_empty_scene``, from the engine's verdict, never
from the labels), and the engine starts afresh at every new site (``device/vision/sequences.py``).

Scores are kept per frame (each frame's own blank score, with its burst's motion, against its
own label) and per event (the event's score, the minimum over its frames, against the event's
truth: not blank when any frame is). ``leave_one_group_out`` is how figures are reported
without tuning to the set: each group is scored at a threshold calibrated on the others.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from device.contracts.calibration import Calibration, Level
from device.contracts.protocol import ObservationType
from device.vision.calibration import Outcome, Scored, ThresholdInForce, calibrate, outcome_at
from device.vision.engine import EventFrame, VisionEngine, shows_empty_scene
from device.vision.evaluate import photo_lores, render_burst
from device.vision.metrics import LevelFigures, level_figures
from device.vision.sequences import PlannedEvent

if TYPE_CHECKING:
    from device.config import LocationSection, VisionSection

SYNTHETIC_SIZE = (1280, 720)
SYNTHETIC_LORES = (320, 240)
SYNTHETIC_FRAMES = 3
# Every labelled event is scored as a PIR-triggered burst: a timelapse frame would teach the
# background even when kept, which labelled photos cannot tell.
CAPTURE_METHOD = "activityDetection"


@dataclass
class EvalFrame:
    key: str  # unique in the set (the file name); the engine's media id
    path: Path | None
    label: ObservationType
    lores: np.ndarray | None
    difficulty: str | None = None


@dataclass
class EvalEvent:
    event_id: str
    site: str
    frames: list[EvalFrame]
    group: str | None = None  # the --split-by value (of the first frame)


@dataclass
class FrameScore:
    key: str
    label: ObservationType
    score: float | None  # None: the frame could not be classified
    difficulty: str | None = None
    error: str | None = None

    @property
    def not_blank(self) -> bool:
        return self.label != "blank"


@dataclass
class EventScore:
    event_id: str
    site: str
    frames: list[FrameScore]
    score: float | None  # None: no frame of it could be classified
    is_blank: bool
    observation_type: ObservationType
    group: str | None = None
    error: str | None = None

    @property
    def not_blank(self) -> bool:
        return any(f.not_blank for f in self.frames)

    @property
    def difficulty(self) -> str | None:
        """The difficulty of what there is to find: of its not-blank frames, else of all."""
        pool = [f for f in self.frames if f.not_blank] or self.frames
        values = list(dict.fromkeys(f.difficulty for f in pool if f.difficulty))
        return "/".join(values) if values else None


# -- engines ---------------------------------------------------------------------------------


@dataclass
class EngineMaker:
    """Fresh engines over one loaded pack and model (a new site starts with no learnt state)."""

    loaded: VisionEngine
    vision: VisionSection
    location: LocationSection

    def configured(self) -> VisionEngine:
        """As the trap would run: the threshold in force by the usual precedence."""
        return VisionEngine(self.loaded.pack, self.loaded.model, self.vision, self.location)

    def uncalibrated(self) -> VisionEngine:
        """For calibrating: no calibration table of any kind, so the background learns at
        the manifest's stated threshold (or an explicit vision.blank_threshold). A
        calibration never depends on an earlier one, so re-running it gives the same table."""
        vision = self.vision.model_copy(update={"calibration": None, "calibration_file": None})
        pack = replace(self.loaded.pack, calibration=None)
        return VisionEngine(pack, self.loaded.model, vision, self.location)

    def calibrated_by(self, calibration: Calibration) -> VisionEngine:
        """As a trap with ``calibration`` pushed as its deployment calibration."""
        vision = self.vision.model_copy(update={"calibration": calibration})
        return VisionEngine(self.loaded.pack, self.loaded.model, vision, self.location)


# -- sources of events -----------------------------------------------------------------------


def labelled_events(
    planned: Iterable[PlannedEvent],
    lores_size: tuple[int, int],
    split_by: str | None = None,
    difficulty_column: str | None = "difficulty",
) -> Iterator[EvalEvent]:
    """Planned events of a labelled folder, each frame with the analysis plane a camera
    would have made for it (decoded one event at a time)."""
    for event in planned:
        frames = [
            EvalFrame(
                key=frame.sample.file,
                path=frame.path,
                label=frame.sample.label,
                lores=photo_lores(frame.path, lores_size),
                difficulty=frame.sample.column(difficulty_column) if difficulty_column else None,
            )
            for frame in event.frames
        ]
        group = event.frames[0].sample.column(split_by) if split_by else None
        yield EvalEvent(
            event.event_id, event.site, frames, (group or "(none)") if split_by else None
        )


def synthetic_events(
    n_events: int,
    seed: int,
    size: tuple[int, int] = SYNTHETIC_SIZE,
    lores_size: tuple[int, int] = SYNTHETIC_LORES,
    frames: int = SYNTHETIC_FRAMES,
) -> Iterator[EvalEvent]:
    """Whole synthetic bursts (``device.hardware.scene``), one site; each event's JPEGs exist
    only while it is being classified. A frame's difficulty is its scene's kind."""
    with tempfile.TemporaryDirectory(prefix="camtrap-bursts-") as tmp:
        for index in range(n_events):
            rendered = render_burst(seed, index, Path(tmp), size, lores_size, frames)
            event = [EvalFrame(r.path.name, r.path, r.label, r.lores, r.kind) for r in rendered]
            yield EvalEvent(f"s{index:05d}", "synthetic", event)
            for r in rendered:
                r.path.unlink(missing_ok=True)


# -- running the trap's path -------------------------------------------------------------------


def run_events(
    events: Iterable[EvalEvent], new_engine: Callable[[], VisionEngine]
) -> list[EventScore]:
    """Classify each event as the agent would, a fresh engine at each new site."""
    out: list[EventScore] = []
    engine: VisionEngine | None = None
    site: str | None = None
    for event in events:
        if engine is None or event.site != site:
            engine, site = new_engine(), event.site
        frames = [EventFrame(f.key, f.path, f.lores) for f in event.frames]
        verdict = engine.classify_event(frames)
        rows = {row.media_id: row for row in verdict.observations[1:] if row.media_id}
        scores = []
        for f in event.frames:
            row = rows.get(f.key)
            score = None if row is None or row.blank_score is None else float(row.blank_score)
            error = verdict.frame_errors.get(f.key) if score is None else None
            scores.append(FrameScore(f.key, f.label, score, f.difficulty, error or None))
        classified = len(verdict.frame_errors) < len(frames)
        out.append(
            EventScore(
                event_id=event.event_id,
                site=event.site,
                frames=scores,
                score=float(verdict.blank_score) if classified else None,
                is_blank=verdict.is_blank,
                observation_type=verdict.observations[0].observation_type,
                group=event.group,
                error=None if classified else "no frame could be classified",
            )
        )
        # The worker's own rule for what teaches the background (from the verdict only).
        if shows_empty_scene(verdict, CAPTURE_METHOD):
            for f in event.frames:
                if f.lores is not None:
                    engine.learn_background(f.lores)
        engine.remember_empty_scene(event.event_id, verdict, CAPTURE_METHOD)
    return out


def frame_items(events: Sequence[EventScore]) -> list[tuple[Scored, str | None]]:
    return [
        (Scored(f.score, f.not_blank), f.difficulty)
        for e in events
        for f in e.frames
        if f.score is not None
    ]


def event_items(events: Sequence[EventScore]) -> list[tuple[Scored, str | None]]:
    return [(Scored(e.score, e.not_blank), e.difficulty) for e in events if e.score is not None]


def items_at(level: Level, events: Sequence[EventScore]) -> list[Scored]:
    pairs = event_items(events) if level == "event" else frame_items(events)
    return [s for s, _ in pairs]


@dataclass
class EventReport:
    classified_by: str
    threshold: ThresholdInForce
    grouping: str
    site_rule: str
    events: list[EventScore]
    frame: LevelFigures
    event: LevelFigures
    breakdown: str | None = None  # the column the breakdown is by (difficulty, kind)

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(e.site for e in self.events))


def event_report(
    events: list[EventScore],
    threshold: ThresholdInForce,
    *,
    classified_by: str,
    grouping: str,
    site_rule: str,
    breakdown: str | None,
) -> EventReport:
    frame_errors = sum(f.score is None for e in events for f in e.frames)
    return EventReport(
        classified_by=classified_by,
        threshold=threshold,
        grouping=grouping,
        site_rule=site_rule,
        events=events,
        frame=level_figures("frame", frame_items(events), threshold.value, frame_errors),
        event=level_figures(
            "event", event_items(events), threshold.value, sum(e.score is None for e in events)
        ),
        breakdown=breakdown,
    )


# -- leave one group out ---------------------------------------------------------------------


@dataclass
class Fold:
    group: str
    calibration: Calibration  # measured on every other group
    threshold: ThresholdInForce  # the held-out group's threshold, from that table
    events: list[EventScore]  # the held-out group, run at that threshold
    frame: Outcome
    event: Outcome


@dataclass
class SplitReport:
    column: str
    level: Level
    target_recall: float
    folds: list[Fold] = field(default_factory=list)

    @property
    def pooled_frame(self) -> Outcome | None:
        return _pooled([f.frame for f in self.folds])

    @property
    def pooled_event(self) -> Outcome | None:
        return _pooled([f.event for f in self.folds])


def _pooled(outcomes: list[Outcome]) -> Outcome | None:
    if not outcomes:
        return None
    total = outcomes[0]
    for o in outcomes[1:]:
        total = total + o
    return total


def leave_one_group_out(
    column: str,
    events: Callable[[], Iterable[EvalEvent]],
    maker: EngineMaker,
    *,
    level: Level,
    created: datetime,
    set_name: str,
) -> SplitReport:
    """For each group of ``column``: calibrate on the other groups (the rule of
    device/vision/calibration.py, at ``level``), then run the held-out group as a trap with
    that table as its deployment calibration and score it at the threshold it put in force.

    The calibration scores come from one run of every group with the uncalibrated engine,
    as ``camtrap calibrate`` would make them; each held-out group is run again, since what
    its background learns depends on the threshold in force.
    """
    scored = run_events(events(), maker.uncalibrated)
    groups = list(dict.fromkeys(e.group or "(none)" for e in scored))
    report = SplitReport(column, level, maker.vision.target_recall)
    for group in groups:
        others = [e for e in scored if (e.group or "(none)") != group]
        table = calibrate(
            items_at(level, others),
            name=f"{set_name} without {column}={group}",
            level=level,
            created=created,
            classified_by=maker.loaded.classified_by,
        )
        probe = maker.calibrated_by(table)
        held = run_events(
            (e for e in events() if (e.group or "(none)") == group),
            partial(maker.calibrated_by, table),
        )
        value = probe.operating_point.value
        report.folds.append(
            Fold(
                group=group,
                calibration=table,
                threshold=probe.operating_point,
                events=held,
                frame=outcome_at([s for s, _ in frame_items(held)], value),
                event=outcome_at([s for s, _ in event_items(held)], value),
            )
        )
    return report
