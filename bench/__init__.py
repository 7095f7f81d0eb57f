"""d365kit benchmarks against the baselines a user would otherwise pick (issue 7).

``make bench`` / ``d365kit bench`` runs them and appends a dated section to ``bench/RESULTS.md``.

Adding a benchmark: write ``bench/<name>.py`` with ``TITLE`` (a line of text) and
``run(ctx: BenchContext) -> list[Case]``, and add ``"<name>": "bench.<name>"`` to ``BENCHMARKS`` in
``bench/runner.py``. Time contenders with ``bench.measure.time_contenders`` (warm-up, interleaved repeats,
median), wrap the figures in ``bench.results.Measurement``/``Case`` with a target, and take the sandbox
(a separate process, started on first use) from ``ctx.sandbox()``. The runner profiles the hot path of
every case that misses its target and writes the tables.
"""
