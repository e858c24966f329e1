"""Detection settings of a model's monitor (the ``detection`` section of the config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MonitorConfig:
    """Detection settings; the defaults are what driftgate runs with out of the box.

    The window is counted in the model's predictions (``window_events``), or, with
    ``window_s`` > 0, is a tumbling window of event time: aligned to multiples of
    ``window_s`` since the epoch (restarts and replays agree), it is the one that holds
    its first row, and closes before the first row at or past its end; after a gap, one
    window closes and the next is the one holding the new row. Late rows (event time
    before the window's start) go into the current window and are counted. A scope (a
    cohort value) whose share of a window is under ``min_window_events`` carries its
    events over to the next window instead of being judged on too few.
    """

    reference_events: int = 10_000
    # A reference that covers whole days compares like with like on traffic with a daily
    # cycle: it grows to reference_span_s of event time when that fits in
    # reference_max_events (slow streams); a faster stream keeps reference_events, since a
    # day of it would blind the monitor for too long and part of a day helps little.
    reference_span_s: float = 86_400.0
    reference_max_events: int = 50_000
    window_events: int = 2_000
    window_s: float = 0.0
    # One event dated far ahead would open a window no later event reaches: a window by
    # event time also closes once it holds this many predictions, and the next one is the
    # one holding the next row, so the monitor keeps judging and goes back to the events'
    # own time after one full window. The reference may hold as many predictions (its
    # default reference_max_events), so this adds no new memory ceiling.
    window_max_events: int = 50_000
    min_window_events: int = 200
    min_reference_events: int = 200
    numeric_bins: int = 10
    max_categories: int = 20
    psi_threshold: float = 0.2
    alpha: float = 0.001
    persistence_windows: int = 3
    # A reported condition's incident resolves only after it stayed clear for this many
    # judged windows (at least persistence_windows). Twice the persistence: a condition
    # that dips under its threshold for a few windows and comes back (a concept drift
    # judged on labels that trickle in, a gradual shift around the PSI threshold) is the
    # same incident going on, and the one order given for it stands; a clear streak that
    # long is as unlikely by chance for a real change as the persistence is for noise.
    resolve_windows: int = 6
    adwin_delta: float = 0.002
    cohort_dimensions: tuple[tuple[str, ...], ...] = ()
    max_cohort_values: int = 20
    max_cohort_dimensions: int = 8
    max_features: int = 200
    reference_labels: int = 5_000
    label_window_labels: int = 1_000
    min_labels: int = 200
    untrusted_sources: tuple[str, ...] = ("click", "implicit", "proxy")
    max_versions: int = 20

    def __post_init__(self) -> None:
        positive = (
            "reference_events",
            "reference_max_events",
            "window_events",
            "window_max_events",
            "min_window_events",
            "min_reference_events",
            "max_categories",
            "persistence_windows",
            "resolve_windows",
            "max_cohort_values",
            "max_cohort_dimensions",
            "max_features",
            "reference_labels",
            "label_window_labels",
            "min_labels",
            "max_versions",
        )
        for name in (*positive, "numeric_bins"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            if value < (2 if name == "numeric_bins" else 1):
                low = 2 if name == "numeric_bins" else 1
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.resolve_windows < self.persistence_windows:
            raise ValueError(
                f"resolve_windows must be >= persistence_windows ({self.persistence_windows}), "
                f"got {self.resolve_windows}"
            )
        if self.reference_max_events < self.reference_events:
            raise ValueError(
                f"reference_max_events must be >= reference_events ({self.reference_events}), "
                f"got {self.reference_max_events}"
            )
        if not 0 <= self.reference_span_s < float("inf"):
            raise ValueError(
                f"reference_span_s must be a finite number >= 0 (0: count only), "
                f"got {self.reference_span_s}"
            )
        window_s = self.window_s
        if isinstance(window_s, bool) or not (
            isinstance(window_s, int | float) and 0 <= window_s < float("inf")
        ):
            raise ValueError(
                f"window_s must be a finite number of seconds >= 0 (0: windows of "
                f"window_events predictions), got {window_s!r}"
            )
        if not (0 < self.psi_threshold < float("inf")):
            raise ValueError(f"psi_threshold must be a finite number > 0, got {self.psi_threshold}")
        for name in ("alpha", "adwin_delta"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if any(isinstance(d, str) for d in self.cohort_dimensions):
            raise ValueError(
                "cohort_dimensions must be a list of lists of attribute names, "
                "e.g. [[region], [region, channel]]"
            )
        dims = tuple(tuple(d) for d in self.cohort_dimensions)
        if any(not d or not all(isinstance(a, str) and a for a in d) for d in dims):
            raise ValueError("cohort_dimensions must be lists of attribute names")
        object.__setattr__(self, "cohort_dimensions", dims)
        if isinstance(self.untrusted_sources, str) or not all(
            isinstance(source, str) for source in self.untrusted_sources
        ):
            raise ValueError("untrusted_sources must be a list of label source names")
        object.__setattr__(self, "untrusted_sources", tuple(self.untrusted_sources))
