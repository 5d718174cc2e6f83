"""bakemon's verdicts on production-shaped traffic: the measuring stick for issue 9.

Run (from the repository root)::

    .venv/bin/python -m benchmarks.production                 # --runs 300 for A/A variants
    .venv/bin/python -m benchmarks.production --runs 1000     # the issue's 1,000 A/A bakes
    .venv/bin/python -m benchmarks.production --quick --only zone,lag
    .venv/bin/python -m benchmarks.production --runs 1 --max-event-s 15 --jobs 1  # seconds

Each run is one seeded bake: an independent generator (:mod:`.traffic`, not ``bakesim``) draws
requests with routes, zones, pods, source partitions, shipper lag, bursts, users, cold starts
and clock skew as the situation says; :mod:`.partials` puts them through what ingest does — per
source partition and flush, a :class:`monitor.records.columns.RecordBatch` of what arrived,
screened by the partition's :class:`monitor.records.clock.EventClock` (far-future records
rejected as ``bad_time``), tagged and summarised into totals and (event-time window, stratum)
cells by :mod:`monitor.bakes.tagging` for a :class:`monitor.bakes.spec.Registry` holding the
bake, a partial for every partition at every flush — and :func:`monitor.pipeline.judge.feed`
hands each to the real :class:`monitor.verdict.engine.BakeVerdict`, until it decides or the
horizon passes. Policies come from :meth:`monitor.bakes.spec.BakeSpec.from_dict`, α = 0.01 and
defaults unless a variant says otherwise (:mod:`.scenarios`).

Per variant it reports runs, HALT / PROMOTE / INCONCLUSIVE / undecided counts, the false-HALT
rate (no version worse, or the canary on the HALT margin) and the false-PROMOTE rate (canary
worse, or on the tolerance) with 95 % Wilson intervals, the median / p90 canary requests
*tested* at the decision that matters (the windows closed by then: the statistic's sample
size), the requests served by then and the event-time lag of the decision behind the last
tested window, the reasons seen most, situation-specific numbers (promotions before
``min_duration_s``, HALT reasons naming the route, late records), and issue 9's acceptance
bullets with the measured value and whether each is met (:mod:`.acceptance`). ``--runs`` is the
number of runs of each A/A variant; the others run a stated fraction of it (each variant's
``runs_scale``); ``--quick`` runs every variant a couple of times (a smoke run, ~1-2 minutes).
It writes ``production.md``, ``.json`` and ``.png`` to ``--out``; the same ``--seed`` gives the
same numbers whatever ``--jobs``.
"""
