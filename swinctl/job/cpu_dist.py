"""Run a codebase's train/test script as one task of a CPU process group (gloo).

`python -m swinctl.job.cpu_dist SCRIPT ARGS...` joins the group described by the usual environment (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT: what submitit's TorchDistributedEnvironment exports) and then runs SCRIPT as `__main__`.
MMEngine's own set-up calls `torch.cuda.set_device` before creating the group, which fails on a machine without
GPUs; it leaves an existing group alone, so starting the group here is all a CPU job needs. The job adds
`model_wrapper_cfg.type=swinctl.CPUDistributedDataParallel` because MMEngine also passes GPU device ids to DDP.
"""

from __future__ import annotations

import runpy
import sys


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m swinctl.job.cpu_dist SCRIPT [ARGS...]")
    import torch.distributed as dist

    dist.init_process_group(backend="gloo")  # env:// rendezvous
    script, *args = argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
