"""`swinctl doctor`: is this machine ready to train? Each check is independent and never raises."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from rich.table import Table

from swinctl import render

PACKAGES = ("torch", "torchvision", "mmcv", "mmengine", "mmdet", "mmsegmentation", "openmim", "timm", "submitit",
            "wandb")
EXPECTED = {"torch": "2.14.1", "torchvision": "0.29.1", "mmcv": "2.1.0", "mmengine": "0.10.7", "mmdet": "3.3.0",
            "mmsegmentation": "1.2.2", "openmim": "0.3.9"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _versions() -> list[Check]:
    out = []
    for package in PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out.append(Check(package, False, "not installed: run scripts/setup.sh"))
            continue
        want = EXPECTED.get(package)
        ok = want is None or version == want
        out.append(Check(package, ok, version if ok else f"{version} (swinctl is tested with {want})"))
    return out


def _mmcv_ops() -> Check:
    try:
        import torch
        from mmcv.ops import nms

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
        nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
        cuda = torch.cuda.is_available()
        return Check("mmcv ops", True, "compiled ops load (CPU" + (", CUDA available)" if cuda else ")"))
    except Exception as exc:  # noqa: BLE001 - doctor reports, never raises
        return Check("mmcv ops", False, f"{type(exc).__name__}: {exc}")


def _gpus() -> Check:
    try:
        import torch

        count = torch.cuda.device_count()
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
        return Check("GPUs", True, f"{count}: {names}" if count else "none (smoke runs use the CPU)")
    except Exception as exc:  # noqa: BLE001
        return Check("GPUs", False, str(exc))


def _slurm() -> Check:
    if not shutil.which("sbatch"):
        return Check("SLURM", True, "sbatch not found: --executor auto runs locally")
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P %a %D %t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("SLURM", False, f"sinfo failed: {exc}")
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("SLURM", False, f"sbatch is installed but no controller answers ({last}); "
                     "--executor auto runs locally")
    return Check("SLURM", True, "reachable: " + "; ".join(done.stdout.split("\n")[:4]).strip())


def _wandb() -> Check:
    mode = render.wandb_mode("auto")
    return Check("W&B", True, f"{mode}" + (" (no login configured)" if mode == "offline" else ""))


CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (_versions, _mmcv_ops, _gpus, _slurm, _wandb)


def run_checks() -> list[Check]:
    out: list[Check] = []
    for check in CHECKS:
        result = check()
        out.extend(result if isinstance(result, list) else [result])
    return out


def table(checks: list[Check]) -> Table:
    t = Table(title="swinctl doctor", title_justify="left")
    t.add_column("check")
    t.add_column("ok")
    t.add_column("detail")
    for c in checks:
        t.add_row(c.name, "[green]yes[/]" if c.ok else "[red]no[/]", c.detail)
    return t


def recipe_checks(recipe: str, overrides: list[str], *, scale_lr: bool = True) -> tuple[list[dict], str | None]:
    """`swinctl doctor RECIPE`: the run `swinctl run RECIPE` would submit, against its published setting (the same
    checks as every submission: swinctl.guard), and the state of its reference log. Raises a UserError where a
    submission would be refused (e.g. pretrained weights that do not fit)."""
    from swinctl.guard import reference
    from swinctl.runs import lifecycle as runs

    prepared = runs.prepare(recipe, overrides=overrides, executor="local", wandb="disabled", scale_lr=scale_lr)
    spec = reference.spec_of(prepared.recipe.model_dump(mode="json"))
    if spec is None:
        return prepared.deviations, "reference log: none named (add reference_log: to the recipe to have status " \
                                    "and report compare each evaluation with it)"
    try:
        log = reference.read(spec.url, spec.format)
    except (reference.ReferenceUnavailable, OSError) as exc:
        return prepared.deviations, f"reference log {spec.url}: {exc}"
    points = len(log.val)
    return prepared.deviations, f"reference log ({spec.source}): {points} evaluation{'s' if points != 1 else ''} " \
                                f"cached; status and report compare the run with it (tolerance {spec.tolerance:g})"
