"""Issue 9's acceptance bullets, each with the value this run measured and whether it is met.

A rate bullet "≤ α (allowing binomial noise)" is met when the 95 % Wilson interval of the
measured rate reaches down to α or below; a bullet on requests compares medians of canary
requests *tested* at the decision. Bullets whose variants were not run are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks.detection.report import _wilson as wilson
from benchmarks.production.scenarios import ALPHA, VARIANTS

Results = Mapping[str, Mapping[str, Any]]
Raw = Mapping[str, Sequence[Sequence[Any]]]  # per variant, per run: see run._raw
Row = tuple[str, str, str]  # bullet, measured, met ("yes", "NO", "—" = reported only)

AA_BULLETS = ("diurnal-aa", "lag-30s", "zone-slow", "route-mix", "aa-heavy-tail")
PROMOTE_BULLETS = (
    "tol-errors",
    "tol-sigma-0.5",
    "tol-pareto",
    "tol-sigma-1.0",
    "tol-pareto-sigma-1.0",
    "diurnal-1.5x",
    "diurnal-1.5x-rare",
)
BEYOND_BULLETS = ("lag-35s",)  # canary records later than allowed_lateness_s
MEDIAN_TARGETS = (("errors-2x-equal", 3_450), ("latency-1.10-equal", 2_500))
REPORTED = (
    "errors-2x-10pct",
    "latency-1.10-10pct",
    "latency-1.05-equal",
    "latency-1.05-10pct",
    "slow-tail-equal",
    "slow-tail-10pct",
)
MIN_RUNS = 1_000
POD_KEYED_FACTOR = 1.25  # "as fast as": the pod-keyed median within this factor of random keys
ROUTE_FACTOR = 2.0


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _n(x: float | None) -> str:
    return "—" if x is None else f"{round(x):,}"


def _rate_row(name: str, s: Mapping[str, Any], key: str, what: str) -> Row:
    r = s[key]
    lo, hi = wilson(r["k"], r["n"])
    few = "" if r["n"] >= MIN_RUNS else f"; only {r['n']} runs"
    measured = f"{100 * r['rate']:.2f} % ({r['k']}/{r['n']}; {100 * lo:.2f}–{100 * hi:.2f}{few})"
    return (f"{what} ≤ α: `{name}` — {VARIANTS[name].label}", measured, _yes(lo <= ALPHA))


def _rates(results: Results) -> list[Row]:
    rows = [
        _rate_row(n, results[n], "false_halt", "A/A false HALT") for n in AA_BULLETS if n in results
    ]
    rows += [
        _rate_row(n, results[n], "false_promote", "false PROMOTE")
        for n in PROMOTE_BULLETS
        if n in results
    ]
    for n in BEYOND_BULLETS:  # outside the guarantee: reported, not judged
        if n in results:
            bullet, measured, _ = _rate_row(n, results[n], "false_halt", "A/A false HALT")
            rows.append((bullet.replace(" ≤ α", " (reported)"), measured, "—"))
    return rows


def _route(results: Results) -> list[Row]:
    pooled, alone = results.get("route-4x"), results.get("route-4x-alone")
    if pooled is None:
        return []
    halts, runs = pooled["counts"]["HALT"], pooled["runs"]
    x = pooled["extra"]
    rows = [
        ("4× errors on one route (15 % of traffic) HALTs", f"{halts}/{runs}", _yes(halts == runs)),
        (
            'its HALT reason names the route (`route "/api/cart"`)',
            f"{x['halt_names_route']}/{halts}",
            _yes(halts > 0 and x["halt_names_route"] == halts),
        ),
    ]
    if alone is not None:
        med, ref = x["median_route_n_at_halt"], alone["median_n"]
        ratio = None if not med or not ref else med / ref
        measured = (
            f"median /api/cart canary requests tested at HALT {_n(med)} vs {_n(ref)} alone"
            + ("" if ratio is None else f" ({ratio:.2f}×)")
        )
        ok = ratio is not None and ratio <= ROUTE_FACTOR
        rows.append(
            (f"… within {ROUTE_FACTOR:g}× the same test on the route alone", measured, _yes(ok))
        )
    return rows


def _medians(results: Results) -> list[Row]:
    rows: list[Row] = []
    for name, limit in MEDIAN_TARGETS:
        if name in results:
            s = results[name]
            med = s["median_n"]
            ok = med is not None and med <= limit
            rows.append(
                (f"`{name}`: median tested requests to HALT ≤ {limit:,}", _med(s), _yes(ok))
            )
    for name in REPORTED:
        if name in results:
            rows.append(
                (
                    f"`{name}`: median / p90 tested requests to HALT (reported)",
                    _med(results[name]),
                    "—",
                )
            )
    return rows


def _med(s: Mapping[str, Any]) -> str:
    c = s["counts"]
    return f"{_n(s['median_n'])} / {_n(s['p90_n'])} (HALT {c['HALT']}/{s['runs']})"


def _paired(raw: Raw, a: str, b: str) -> tuple[int, int]:
    """(runs compared, runs whose status, tested requests or duration differ) of two variants
    seeded alike, run by run."""
    n = min(len(raw[a]), len(raw[b]))
    differ = sum(
        (ra[0], ra[1], ra[5]) != (rb[0], rb[1], rb[5])
        for ra, rb in zip(raw[a][:n], raw[b][:n], strict=True)
    )
    return n, differ


def _far_future(results: Results, raw: Raw) -> list[Row]:
    if "far-future" not in results:
        return []
    x = results["far-future"]["extra"]
    runs = results["far-future"]["runs"]
    rows = [
        (
            "the far-future record is rejected as bad_time",
            f"in {x['runs_with_bad_time']}/{runs} runs",
            _yes(x["runs_with_bad_time"] == runs),
        ),
        (
            "no PROMOTE before min_duration_s (300 s of true event time)",
            f"{x['promote_before_min_duration']}/{results['far-future']['counts']['PROMOTE']}",
            _yes(x["promote_before_min_duration"] == 0),
        ),
    ]
    if "far-future-control" in results:
        n, differ = _paired(raw, "far-future", "far-future-control")
        rows.append(
            (
                "a far-future record changes no verdict or duration (paired with the same traffic without it)",
                f"{differ}/{n} runs differ in status, tested requests or duration",
                _yes(differ == 0),
            )
        )
    return rows


def _pod_keyed(results: Results) -> list[Row]:
    pod, rnd = results.get("pod-keyed-5x"), results.get("random-keyed-5x")
    if pod is None or rnd is None:
        return []
    a, b = pod["median_n"], rnd["median_n"]
    ratio = None if not a or not b else a / b
    measured = (
        f"median tested requests to HALT {_n(a)} (pod-keyed) vs {_n(b)} (random keys)"
        + ("" if ratio is None else f", {ratio:.2f}×")
        + f"; HALT {pod['counts']['HALT']}/{pod['runs']} vs {rnd['counts']['HALT']}/{rnd['runs']}"
    )
    ok = ratio is not None and ratio <= POD_KEYED_FACTOR
    bullet = (
        f"a pod-keyed topic decides as fast as random keys (median within {POD_KEYED_FACTOR:g}×)"
    )
    return [(bullet, measured, _yes(ok))]


def _coverage(results: Results) -> list[Row]:
    rows: list[Row] = []
    for name in ("cart-only", "static-only"):
        if name in results:
            s = results[name]
            p = s["counts"]["PROMOTE"]
            bullet = f"a canary serving only part of the mix never PROMOTEs by default: `{name}`"
            rows.append((bullet, f"PROMOTE {p}/{s['runs']}", _yes(p == 0)))
    return rows


SECTIONS: tuple[Callable[[Results, Raw], list[Row]], ...] = (
    lambda r, _: _rates(r),
    lambda r, _: _route(r),
    lambda r, _: _medians(r),
    _far_future,
    lambda r, _: _pod_keyed(r),
    lambda r, _: _coverage(r),
)


def acceptance(results: Results, raw: Raw) -> list[Row]:
    """Every acceptance bullet whose variants are in ``results``."""
    return [row for section in SECTIONS for row in section(results, raw)]


def acceptance_lines(results: Results, raw: Raw) -> list[str]:
    """The acceptance table in markdown (empty when no bullet's variants ran)."""
    rows = acceptance(results, raw)
    if not rows:
        return []
    return [
        "## Acceptance (issue 9)",
        "",
        "| bullet | measured | met |",
        "|---|---|---|",
        *(f"| {b} | {m} | {ok} |" for b, m, ok in rows),
        "",
        "## All variants",
        "",
    ]
