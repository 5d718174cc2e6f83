"""Decode and replay speed against the parser's floor, as ratios measured in one run.

Run (from the repository root)::

    .venv/bin/python benchmarks/decode.py            # 200k lines per preset, 3 repeats
    .venv/bin/python benchmarks/decode.py --log tmp/aa.jsonl.gz --repeats 5

Alternately, ``--repeats`` times each, on the same batches of ``--batch`` lines:

* ``orjson.loads``: ``list(map(orjson.loads, batch))`` (the floor of issue 13, point 3);
* ``decode_batch``: the fast path (msgspec structs) with the reference path as fallback;
* ``reference``: :func:`decode_batch_reference` (orjson dicts only, the path before issue 13);

on all-good batches and with 1 % bad rows, for the ``plain`` and ``istio`` presets. With
``--log``, also whole-process wall time of ``bakemon replay`` against a process that only
gunzips and ``orjson.loads`` every line of the same file (point 6). Medians, ratios against the
floor; writes ``decode.md``, ``decode.json`` and ``decode.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bakesim.scenario import generate, scenario_preset, to_json_lines
from monitor.records.decode import decode_batch, decode_batch_reference
from monitor.records.fieldmap import PRESETS

FIXTURES = Path(__file__).parent.parent / "tests" / "monitor" / "records" / "fixtures"
FLOOR = "import gzip, sys, orjson\nfor line in gzip.open(sys.argv[1]):\n    orjson.loads(line)\n"


def _lines(preset: str, n: int, bad_share: float, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    if preset == "plain":
        cols = generate(scenario_preset("aa", seed=seed), total_requests=n)
        lines = list(to_json_lines(cols))
    else:
        base = (FIXTURES / f"{preset}.jsonl").read_bytes().splitlines()
        lines = []
        for i in range(n):  # distinct request ids and times, so no line repeats
            d = orjson.loads(base[i % len(base)])
            d["request_id"] = f"{rng.getrandbits(128):032x}"
            d["duration"] = rng.randrange(1, 500)
            lines.append(orjson.dumps(d))
    for i in rng.sample(range(n), int(n * bad_share)):
        lines[i] = lines[i][: len(lines[i]) // 2]  # truncated: invalid JSON
    return lines


def _loads(batch: list[bytes]) -> list[Any]:
    """The floor: orjson.loads of every message (a bad one costs an exception, no more)."""
    try:
        return list(map(orjson.loads, batch))
    except orjson.JSONDecodeError:
        out = []
        for m in batch:
            try:
                out.append(orjson.loads(m))
            except orjson.JSONDecodeError:
                out.append(None)
        return out


def _time(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in runs.items()}


def bench_decode(preset: str, n: int, batch: int, bad: float, repeats: int) -> dict[str, Any]:
    lines = _lines(preset, n, bad, seed=13)
    batches = [lines[i : i + batch] for i in range(0, n, batch)]
    fm = PRESETS[preset]
    decode_batch_reference(batches[0], fm)  # learn the log's keys, as the first batch does
    med = _time(
        {
            "orjson.loads": lambda: [_loads(b) for b in batches],
            "decode_batch": lambda: [decode_batch(b, fm) for b in batches],
            "reference": lambda: [decode_batch_reference(b, fm) for b in batches],
        },
        repeats,
    )
    floor = med["orjson.loads"]
    return {
        "preset": preset,
        "bad_share": bad,
        "records_per_s": {k: n / v for k, v in med.items()},
        "ratio": {k: floor / v for k, v in med.items()},
    }


def bench_replay(log: Path, repeats: int) -> dict[str, Any]:
    bake = ["--service", "checkout", "--canary", "v42", "--baseline", "v41", "--quiet"]
    cmds = {
        "gunzip + orjson.loads": [sys.executable, "-c", FLOOR, str(log)],
        "bakemon replay": [sys.executable, "-m", "monitor.cli", "replay", str(log), *bake],
    }
    runs: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeats):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
            runs[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in runs.items()}
    with gzip.open(log) as f:
        n = sum(1 for _ in f)
    floor = med["gunzip + orjson.loads"]
    return {
        "log": str(log),
        "records": n,
        "wall_s": med,
        "records_per_s": {k: n / v for k, v in med.items()},
        "ratio": {k: floor / v for k, v in med.items()},
    }


def _markdown(decode: list[dict[str, Any]], replay: dict[str, Any] | None) -> str:
    out = [
        "| preset | bad rows | orjson.loads rec/s | decode_batch rec/s | ratio | reference ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in decode:
        rps, ratio = r["records_per_s"], r["ratio"]
        out.append(
            f"| {r['preset']} | {r['bad_share']:.0%} | {rps['orjson.loads']:,.0f} | "
            f"{rps['decode_batch']:,.0f} | {ratio['decode_batch']:.2f}× | "
            f"{ratio['reference']:.2f}× |"
        )
    if replay is not None:
        out += ["", "| process | wall s | records/s | ratio |", "|---|---|---|---|"]
        for k, s in replay["wall_s"].items():
            out.append(
                f"| {k} | {s:.2f} | {replay['records_per_s'][k]:,.0f} | {replay['ratio'][k]:.2f}× |"
            )
    return "\n".join(out) + "\n"


def _plot(decode: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['preset']}\n{r['bad_share']:.0%} bad" for r in decode]
    xs = range(len(decode))
    ax.bar(
        [x - 0.2 for x in xs],
        [r["ratio"]["decode_batch"] for r in decode],
        0.4,
        label="decode_batch",
    )
    ax.bar([x + 0.2 for x in xs], [r["ratio"]["reference"] for r in decode], 0.4, label="reference")
    ax.axhline(0.8, color="k", ls="--", lw=1, label="target 0.8×")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("× bare orjson.loads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    """Measure, print the table, write the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--log", type=Path, help="gzip log for the replay comparison")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    decode = [
        bench_decode(p, args.records, args.batch, bad, args.repeats)
        for p in ("plain", "istio")
        for bad in (0.0, 0.01)
    ]
    replay = None if args.log is None else bench_replay(args.log, args.repeats)
    table = _markdown(decode, replay)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode.md").write_text(table)
    (out / "decode.json").write_text(
        json.dumps({"decode": decode, "replay": replay}, indent=2) + "\n"
    )
    _plot(decode, out / "decode.png")


if __name__ == "__main__":
    main()
