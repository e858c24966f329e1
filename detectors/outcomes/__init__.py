"""Outcomes of a binary model per scope, from joined labels, and the judges that read them.

* :class:`OutcomeWindow` (:mod:`~detectors.outcomes.window`) keeps a window's joined
  ``(score, label, scope row)`` rows and summarises them per scope (:class:`OutcomeStats`,
  :mod:`~detectors.outcomes.stats`): counts, error rate at a threshold, log loss, Brier
  score, ROC AUC and calibration by risk band.
* :class:`AucDrop` (:mod:`~detectors.outcomes.auc`) says, per scope, whether a window's
  ROC AUC fell below the reference's beyond its Hanley-McNeil error and by a material
  amount: the ranking judged apart from the probabilities.
* :class:`PerformanceDrop` (:mod:`~detectors.outcomes.performance`) says, per scope,
  whether a window's log loss is worse than the reference's, beyond noise *and* by a
  material amount.
* :class:`CalibrationShift` (:mod:`~detectors.outcomes.calibration`) says whether the
  relation between scores and outcomes moved, risk band by risk band.
* :class:`RateShift` (:mod:`~detectors.outcomes.rates`) compares a rate (positives of
  untrusted labels, overrides, ...) with the reference's.
* :class:`ScopedLossADWIN` (:mod:`~detectors.outcomes.loss_adwin`) runs river's ADWIN on
  the per-event log loss stream.

Scores must be probabilities in [0, 1] and labels 0 or 1; other rows (NaN scores,
regression labels) are skipped and counted in ``OutcomeWindow.skipped``. A negative
scope id in a scope row means "no scope in this dimension" and is ignored.
"""

from __future__ import annotations

from detectors.outcomes.auc import AucDrop, AucVerdict, auc_by_scope, hanley_mcneil_se
from detectors.outcomes.calibration import CalibrationShift, CalibrationVerdict
from detectors.outcomes.loss_adwin import ScopedLossADWIN
from detectors.outcomes.performance import DropVerdict, PerformanceDrop
from detectors.outcomes.rates import RateShift, RateVerdict
from detectors.outcomes.stats import EPS, OutcomeStats, band_edges_from_reference, log_loss
from detectors.outcomes.window import OutcomeWindow

__all__ = [
    "EPS",
    "AucDrop",
    "AucVerdict",
    "CalibrationShift",
    "CalibrationVerdict",
    "DropVerdict",
    "OutcomeStats",
    "OutcomeWindow",
    "PerformanceDrop",
    "RateShift",
    "RateVerdict",
    "ScopedLossADWIN",
    "auc_by_scope",
    "band_edges_from_reference",
    "hanley_mcneil_se",
    "log_loss",
]
