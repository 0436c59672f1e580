"""``memtune reproduce``: the two papers' claims, run as memtune studies, judged by a written
rule.

- :mod:`~memtune.reproduce.claims`: the six claims, the studies that test each and the
  comparisons each claim is judged on, at three sizes (smoke, quick, full); built from
  :mod:`~memtune.reproduce.claim_types`, :mod:`~memtune.reproduce.modes`,
  :mod:`~memtune.reproduce.builder`, :mod:`~memtune.reproduce.claims_am` (claims 1 to 3) and
  :mod:`~memtune.reproduce.claims_cm` (claims 4 to 6);
- :mod:`~memtune.reproduce.run`: runs those studies through the engine (a local Ray or
  ``RAY_ADDRESS``), one JSON file per study, resumable, and the whole-iteration benchmark;
- :mod:`~memtune.reproduce.judge`: from the study files to numbers per comparison, Holm
  across each claim, and the one line per claim that follows from them;
- :mod:`~memtune.reproduce.summaries`: the rest of the numbers: study summaries, learning-rate
  sweeps, performance profiles, time to result;
- :mod:`~memtune.reproduce.document`: the pydantic models of ``report.json``;
- :mod:`~memtune.reproduce.report`: writes ``report.json`` and renders it;
  :mod:`~memtune.reproduce.report_markdown` and :mod:`~memtune.reproduce.plots`: the Markdown
  report and its PNG plots, from ``report.json`` alone.
"""
