"""The zoo's smoke runs: one recipe of each architecture family (`swinctl.zoo.FAMILY_SMOKES`) trained and evaluated
on the generated demo data through `swinctl run --smoke --executor local --wait`, timed end to end.

    nice -n 10 .venv/bin/python benchmarks/zoo_smoke.py [--recipe NAME ...]

A smoke run proves the pipeline (data in the real format, our Swin inside the published architecture, the real
evaluator); its metric is that of one short epoch or a few iterations of a tiny model, not a learning result (see
benchmarks/smoke.py for the seed recipes' learning profiles). Wall time depends on what else runs on the machine:
each run records the 1-minute load average before and after it. Writes benchmarks/results/zoo_smoke.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smoke import RESULTS, smoke_run  # noqa: E402

from swinctl.zoo import FAMILY_SMOKES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", choices=sorted(FAMILY_SMOKES), help="default: every family")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="swinctl-bench-zoo-"))
    runs = []
    try:
        for recipe in args.recipe or list(FAMILY_SMOKES):
            run = smoke_run(recipe, work / recipe, [])
            del run["stdout"]  # what the command printed: not a measurement
            metrics = {m: run["metrics"].get(m) for m in FAMILY_SMOKES[recipe]}
            run.update(shown=metrics, ok=run["state"] == "COMPLETED" and None not in metrics.values())
            runs.append(run)
            print(f"{recipe}: {run['state']} in {run['wall_s']:.0f} s wall, "
                  f"{', '.join(f'{k} {v}' for k, v in metrics.items())}, 1-min load before/after "
                  f"{run['load_1min']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"runs": runs, "cpus": os.cpu_count(), "all_ok": all(r["ok"] for r in runs)}
    if not args.recipe:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "zoo_smoke.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
