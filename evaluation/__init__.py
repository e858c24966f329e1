"""How driftgate is judged: synthetic traffic with its ground truth, and the scoring of
decisions against it. None of it runs in the service.

- ``evaluation.simulate``: deterministic prediction and feedback streams with scripted
  incidents (``driftgate simulate``), and the truth files that say what a monitor should
  conclude about them;
- ``evaluation.scoring``: decisions matched to a truth's incidents (recall, delay, action
  and cause accuracy, false decisions, wrong retrains), pure;
- ``evaluation.scorecard``: the truth and decision files read, scored and rendered as
  tables (``driftgate score``);
- ``evaluation.baselines``: the retraining reflex as usually built (ADWIN, PSI over
  windows, a schedule), for comparison on the same streams;
- ``evaluation.demo_traffic``: what ``driftgate demo`` streams into its broker (the demo's
  sending and printing are in ``streamer/demo.py``).

The dependencies point one way: evaluation uses ``detectors`` (the baselines are built
from its statistics) and ``streamer.errors``; neither ``detectors`` nor the service loop
imports evaluation (``.ci/run`` checks it).
"""
