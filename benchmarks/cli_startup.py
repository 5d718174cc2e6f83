"""Start-up time of ``bakemon`` commands against a bare ``python -c pass``, in one run.

Run (from the repository root)::

    .venv/bin/python benchmarks/cli_startup.py               # 7 runs of each command
    .venv/bin/python benchmarks/cli_startup.py --repeats 15

Each command is started as a fresh process (``python -m monitor.cli …``, what the ``bakemon``
script runs), ``--repeats`` times, the commands interleaved so machine load hits them alike; the
baseline is the same interpreter running ``-c pass``. Client commands are timed against an API
that refuses connections (``http://127.0.0.1:1``), so the time is start-up, argument parsing and
one failed connect. The target is a client command under 0.5 s (issue 12); nothing asserts it —
this is a benchmark, not a timed test. It prints a table and writes ``cli_startup.md``,
``cli_startup.json`` and ``cli_startup.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET_S = 0.5
UNREACHABLE = "http://127.0.0.1:1"
# label → arguments after the interpreter (the baseline first)
COMMANDS: dict[str, list[str]] = {
    "python -c pass (baseline)": ["-c", "pass"],
    "bakemon --help": ["-m", "monitor.cli", "--help"],
    "bakemon bake get --help": ["-m", "monitor.cli", "bake", "get", "--help"],
    "bakemon bake get X (unreachable)": ["-m", "monitor.cli", "bake", "get", "X", "--url", UNREACHABLE],
    "bakemon bake list (unreachable)": ["-m", "monitor.cli", "bake", "list", "--url", UNREACHABLE],
    "bakemon bake wait X (unreachable)": [
        "-m", "monitor.cli", "bake", "wait", "X", "--url", UNREACHABLE, "--retries", "0",
        "--interval", "1s",
    ],
    "bakemon alerts tail (unreachable)": ["-m", "monitor.cli", "alerts", "tail", "--url", UNREACHABLE],
    "bakemon replay --help": ["-m", "monitor.cli", "replay", "--help"],
    "bakemon run --help": ["-m", "monitor.cli", "run", "--help"],
}  # fmt: skip
CLIENT = {k for k in COMMANDS if k.startswith(("bakemon bake", "bakemon alerts", "bakemon --help"))}


def _once(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, check=False)
    return time.perf_counter() - t0


def _measure(repeats: int) -> dict[str, list[float]]:
    """Seconds of each run of each command, interleaved."""
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for r in range(repeats):
        for label, args in COMMANDS.items():
            times[label].append(_once(args))
        print(f"  run {r + 1} of {repeats} done", file=sys.stderr)
    return times


def _table(times: dict[str, list[float]], repeats: int, load: list[float]) -> str:
    base = statistics.median(times["python -c pass (baseline)"])
    lines = [
        "# CLI start-up",
        "",
        f"{repeats} interleaved runs of each command as a fresh process ({sys.executable} "
        f"-m monitor.cli …); {os.cpu_count()} CPUs, 1-minute load average {load[0]:.1f} before, "
        f"{load[-1]:.1f} after. Client commands fail to connect to {UNREACHABLE} at once.",
        "",
        "| command | median s | min s | max s | over baseline s | client target < 0.5 s |",
        "|---|---|---|---|---|---|",
    ]
    for label, xs in times.items():
        med = statistics.median(xs)
        target = ("met" if med < TARGET_S else "NOT met") if label in CLIENT else ""
        lines.append(
            f"| {label} | {med:.3f} | {min(xs):.3f} | {max(xs):.3f} | {med - base:+.3f} | {target} |"
        )
    return "\n".join(lines)


def _plot(times: dict[str, list[float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = list(times)
        medians = [statistics.median(times[k]) for k in labels]
        colours = ["#999999" if k not in CLIENT else "#1f77b4" for k in labels]
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        ax.barh(labels, medians, color=colours)
        for y, k in enumerate(labels):
            ax.plot(times[k], [y] * len(times[k]), "k|", markersize=10)
        ax.axvline(TARGET_S, color="#d62728", linestyle="--", linewidth=1)
        ax.invert_yaxis()
        ax.set_xlabel("seconds to exit (median; ticks = runs; dashed = 0.5 s client target)")
        ax.set_title("bakemon start-up vs python -c pass")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Time every command, print the table, write the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="runs of each command (default 7)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    load = [os.getloadavg()[0]]
    times = _measure(args.repeats)
    load.append(os.getloadavg()[0])
    table = _table(times, args.repeats, load)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cli_startup.md").write_text(table + "\n")
    result: dict[str, Any] = {"seconds": times, "load_average_1m": load, "target_s": TARGET_S}
    (out / "cli_startup.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(times, out / "cli_startup.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
