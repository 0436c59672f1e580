"""``memtune reproduce``: the two papers' claims, run as memtune studies, judged by a written
rule.

- :mod:`~memtune.reproduce.claims`: the six claims, the studies that test each and the
  comparisons each claim is judged on, at three sizes (smoke, quick, full);
- :mod:`~memtune.reproduce.run`: runs those studies through the engine (a local Ray or
  ``RAY_ADDRESS``), one JSON file per study, resumable, and the whole-iteration benchmark;
- :mod:`~memtune.reproduce.judge`: from the study files to numbers per comparison, Holm
  across each claim, and the one line per claim that follows from them;
- :mod:`~memtune.reproduce.summaries`: the rest of the numbers: study summaries, learning-rate
  sweeps, performance profiles, time to result;
- :mod:`~memtune.reproduce.document`: the pydantic models of ``report.json``;
- :mod:`~memtune.reproduce.report` and :mod:`~memtune.reproduce.plots`: the Markdown report
  and its PNG plots, from ``report.json`` alone.
"""
