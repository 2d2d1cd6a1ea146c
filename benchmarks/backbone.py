"""Benchmark swinctl's Swin-T backbone against MMDet 3.x's, same process, same weights, on CPU.

    .venv/bin/python benchmarks/backbone.py [--threads 2] [--repeats 5] [--quick]

Times forward+backward (batch 2) at 224x224 and 512x512 and forward only at 800x1333, interleaving the two models
so that background load hits both alike; reports the min and median of the repeats and ratios theirs/ours (> 1: ours
is faster / smaller; speed from the minima, the estimate least disturbed by other work on a shared machine). Memory
is counted as live tensor storage: a TorchDispatchMode records every storage an op
creates and when it is freed (weights, gradients already allocated and the input are excluded), giving the peak over
the step and the "activation memory" still alive when forward returns (what backward needs). Prints a rich table and
writes benchmarks/results/backbone.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from swinctl.models import SwinTransformer
from swinctl.models.checkpoints import from_official

RESULTS = Path(__file__).resolve().parent / 'results' / 'backbone.json'
BATCH = 2


class LiveTensorMemory(TorchDispatchMode):
    """Bytes of tensor storages created inside the mode and still alive: current, peak, and at marked points."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = 0
        self.marks: dict[str, int] = {}

    def _collect_freed(self) -> None:
        for key in [key for key, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]

    def mark(self, name: str) -> None:
        self._collect_freed()
        self.marks[name] = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._collect_freed()
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type == 'cpu':
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


@dataclass
class Measurement:
    model: str
    size: str
    mode: str  # 'fwd+bwd' or 'fwd'
    seconds_min: float
    seconds_median: float
    peak_mib: float  # NaN when not measured
    activation_mib: float | None  # alive after forward (fwd+bwd only)


def make_models(with_cp_too: bool):
    from mmdet.models.backbones import SwinTransformer as MMDetSwinTransformer

    torch.manual_seed(0)
    ours = SwinTransformer(arch='tiny', drop_path_rate=0.0)
    theirs = MMDetSwinTransformer(drop_path_rate=0.0)
    theirs.load_state_dict(from_official(ours.state_dict(), 'mmdet'), strict=True)
    models = {'mmdet': theirs, 'swinctl': ours}
    if with_cp_too:
        ours_cp = SwinTransformer(arch='tiny', drop_path_rate=0.0, with_cp=True)
        ours_cp.load_state_dict(ours.state_dict())
        models['swinctl with_cp'] = ours_cp
    return models


def step(model: torch.nn.Module, image: torch.Tensor, backward: bool, memory: LiveTensorMemory | None = None) -> None:
    if not backward:
        with torch.no_grad():
            model(image)
        return
    outputs = model(image)
    if memory is not None:
        memory.mark('after_forward')
    sum(out.float().mean() for out in outputs).backward()


def linear_floor(model: SwinTransformer, image: torch.Tensor, backward: bool) -> Callable[[], None]:
    """A step running only ``model``'s linear layers (and the MLP's GELU) on random inputs of the shapes they see.

    Both implementations do at least this matmul work (MMDet more: it also projects the padding tokens), so
    mmdet time / this time bounds the speed-up any fp32 re-implementation can reach on this CPU.
    """
    shapes: list[tuple[nn.Linear, torch.Size]] = []
    hooks = [module.register_forward_pre_hook(lambda module, args: shapes.append((module, args[0].shape)))
             for module in model.modules() if isinstance(module, nn.Linear)]
    with torch.no_grad():
        model(image)
    for hook in hooks:
        hook.remove()
    inputs = [(module, torch.randn(shape, requires_grad=backward), module.out_features == 4 * module.in_features)
              for module, shape in shapes]

    def step() -> None:
        with torch.set_grad_enabled(backward):
            for module, x, is_fc1 in inputs:
                y = module(x)
                y = F.gelu(y) if is_fc1 else y
                if backward:
                    y.backward(torch.ones_like(y))

    return step


def measure(models, size: tuple[int, int], backward: bool, repeats: int) -> list[Measurement]:
    image = torch.randn(BATCH, 3, *size, requires_grad=False)
    steps = {name: functools.partial(step, model, image, backward) for name, model in models.items()}
    steps['linear-layer floor'] = linear_floor(models['swinctl'], image, backward)
    for model in models.values():
        model.train(backward)
        model.zero_grad(set_to_none=False)
    for run in steps.values():
        run()  # warm-up: caches, allocator, and gradients exist before measuring
    times = {name: [] for name in steps}
    names = list(steps)
    for repeat in range(repeats):
        # Interleaved, in a rotating order: background load and allocator state affect all alike.
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            run = steps[name]
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    results = [Measurement('linear-layer floor', f'{size[0]}x{size[1]}', 'fwd+bwd' if backward else 'fwd',
                           min(times['linear-layer floor']), statistics.median(times['linear-layer floor']),
                           float('nan'), None)]
    for name, model in models.items():
        memory = LiveTensorMemory()
        with memory:
            step(model, image, backward, memory)
        results.append(
            Measurement(
                model=name,
                size=f'{size[0]}x{size[1]}',
                mode='fwd+bwd' if backward else 'fwd',
                seconds_min=min(times[name]),
                seconds_median=statistics.median(times[name]),
                peak_mib=memory.peak / 2**20,
                activation_mib=memory.marks['after_forward'] / 2**20 if backward else None,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--quick', action='store_true', help='224 and 512 only, 2 repeats')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats

    cases = [((224, 224), True), ((512, 512), True)] + ([] if args.quick else [((800, 1333), False)])
    models = make_models(with_cp_too=True)
    measurements: list[Measurement] = []
    for size, backward in cases:
        chosen = models if backward else {name: m for name, m in models.items() if 'with_cp' not in name}
        measurements += measure(chosen, size, backward, repeats)

    report(measurements, args.threads, repeats)


def report(measurements: list[Measurement], threads: int, repeats: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f'Swin-T backbone, batch {BATCH}, fp32, CPU, {threads} threads, {repeats} repeats '
                  '(ratio = mmdet / swinctl)')
    for column in ('size', 'mode', 'model', 'time min s', 'time median s', 'speed ratio',
                   'peak MiB', 'peak ratio', 'activation MiB', 'activation ratio'):
        table.add_column(column, justify='left' if column in ('size', 'mode', 'model') else 'right')
    rows = []
    for case in dict.fromkeys((m.size, m.mode) for m in measurements):
        group = {m.model: m for m in measurements if (m.size, m.mode) == case}
        reference = group['mmdet']
        for name, m in sorted(group.items(), key=lambda item: item[0] == 'linear-layer floor'):
            speed = reference.seconds_min / m.seconds_min  # the min is the estimate least hit by background load
            measured_memory = m.peak_mib == m.peak_mib  # NaN for the floor, which is timed only
            peak = reference.peak_mib / m.peak_mib if measured_memory else None
            activation = (reference.activation_mib / m.activation_mib) if m.activation_mib else None
            rows.append(asdict(m) | {'speed_ratio': speed, 'peak_ratio': peak, 'activation_ratio': activation})
            table.add_row(m.size, m.mode, name, f'{m.seconds_min:.3f}', f'{m.seconds_median:.3f}',
                          '' if name == 'mmdet' else f'{speed:.2f}x',
                          f'{m.peak_mib:.0f}' if measured_memory else '-',
                          '' if name == 'mmdet' or peak is None else f'{peak:.2f}x',
                          '-' if m.activation_mib is None else f'{m.activation_mib:.0f}',
                          '' if name == 'mmdet' or activation is None else f'{activation:.2f}x')
    console = Console(width=150)
    console.print(table)
    console.print('memory: live tensor storage bytes tracked op by op (TorchDispatchMode + storage weakrefs), '
                  'excluding weights, existing gradients and the input; activation = alive when forward returns')
    console.print('linear-layer floor: only swinctl\'s linear layers (+ GELU) on inputs of the shapes they see; '
                  'its speed ratio bounds what any fp32 implementation can gain over mmdet on this CPU')
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        'torch': torch.__version__, 'threads': threads, 'repeats': repeats, 'batch': BATCH,
        'cpu': platform.processor() or platform.machine(), 'memory_method': 'live tensor storages (dispatch mode)',
        'results': rows,
    }, indent=2) + '\n')
    console.print(f'wrote {RESULTS}')


if __name__ == '__main__':
    main()
