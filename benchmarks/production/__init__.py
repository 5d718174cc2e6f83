"""bakemon's verdicts on production-shaped traffic: the measuring stick for issue 9.

Run (from the repository root)::

    .venv/bin/python -m benchmarks.production                 # --runs 300 for A/A variants
    .venv/bin/python -m benchmarks.production --runs 1000     # the issue's 1,000 A/A bakes
    .venv/bin/python -m benchmarks.production --quick --only zone,lag
    .venv/bin/python -m benchmarks.production --runs 1 --max-event-s 5 --jobs 1   # seconds

Each run is one seeded bake: an independent generator (:mod:`.traffic`, not ``bakesim``) draws
requests with routes, zones, pods, source partitions, shipper lag, bursts, users, cold starts
and clock skew as the situation says; :mod:`.partials` cuts them into the increments the judge
folds today — one per source partition and flush interval, both cohorts as they fall into that
partition, each record where its arrival puts it — and the real
:meth:`monitor.verdict.engine.BakeVerdict.update` is called once per partial with
:class:`detectors.summary.CohortSummary` summaries (zone, route and host segments) and the
partial's largest event time, until it decides or the horizon passes. Policies come from
:meth:`monitor.bakes.spec.BakeSpec.from_dict`, α = 0.01 and defaults unless a variant says
otherwise (:mod:`.scenarios`).

Per variant it reports runs, HALT / PROMOTE / INCONCLUSIVE / undecided counts, the false-HALT
rate (no version worse, or the canary on the HALT margin) and the false-PROMOTE rate (canary
worse, or on the tolerance) with 95 % Wilson intervals, the median / p90 canary requests to the
decision that matters, the reasons seen most, and situation-specific numbers (promotions
before ``min_duration_s``, HALT reasons naming the route, estimates outside their bounds).
``--runs`` is the number of runs of each A/A variant; the others run a stated fraction of it
(each variant's ``runs_scale``). It writes ``production.md``, ``.json`` and ``.png`` to
``--out``; the same ``--seed`` gives the same numbers whatever ``--jobs``.
"""
