"""Detection quality of bakemon's verdict engine against classical canary judges.

Run (from the repository root)::

    .venv/bin/python -m benchmarks.detection             # 300 runs per scenario (A/A 600), 2 jobs
    .venv/bin/python -m benchmarks.detection --quick     # 60 runs per scenario (smoke run)
    .venv/bin/python -m benchmarks.detection --scenarios aa,errors-2x --runs 100 --seed 7
    .venv/bin/python -m benchmarks.detection --runs 2 --aa-runs 1   # tiny: seconds, checks it runs

What is measured. Each run simulates one bake as a sequence of looks: canary and baseline
requests with lognormal latency (median 50 ms, σ = 0.5 on the log scale) and Bernoulli errors
(1 % in the baseline), the canary changed as the scenario says. On the same data of a run:

* ``bakemon``: the real :class:`monitor.verdict.engine.BakeVerdict` (errors and latency p50/p90/p99
  gated, α = 0.01 in total), fed one second of event time at a time (a tenth of a *look*: 10
  requests per arm, or 1 + 9 at a 10 % canary share) until it decides or the cap is reached; it
  tests its default 10 s event-time windows, so once per look, and its n is the canary requests
  it had *tested* at the decision;
* ``fixed-horizon``: a one-sided test at α = 0.01 with a single look at the per-arm sample size
  that has 80 % power for the scenario's true effect (two-proportion z-test on errors, Welch
  t-test on mean log-latency);
* ``peeked``: the z-test on errors, or a one-sided Mann–Whitney U on latency, re-run at every
  look (100 requests per arm; 10 + 90 at a 10 % share), the way fixed-horizon canary judges are
  used;
* ``oracle SPRT``: a one-sided sequential probability ratio test that knows the true effect.

Per scenario and method it reports the false-HALT rate (A/A only), the power (share of runs that
HALT within the cap), the median and p90 canary requests to the decision (HALT; PROMOTE for
bakemon in A/A; runs without that decision count as beyond the cap) and bakemon's PROMOTE rate.
It writes ``detection.md``, ``detection.json`` and ``detection.png`` to ``--out``; the same
``--seed`` gives the same numbers whatever ``--jobs``.

Modules: :mod:`.scenarios` (settings, simulated runs, fixed-horizon designs), :mod:`.comparators`
(the classical judges), :mod:`.run` (bakemon's verdict engine, the driver), :mod:`.report`
(aggregation, table, targets, plot).
"""
