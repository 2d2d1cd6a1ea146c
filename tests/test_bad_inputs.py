"""Untrusted and careless input, table-driven: every case is one clear error, exit 2, no traceback, nothing run and
nothing left behind (no run directory, no ledger row, no file a crafted input asked to create).

The inputs are real: recipe and sweep files written to disk, checkpoints saved by torch (a pickle whose unpickling
would run `open(MARKER, 'w')`, truncated zips, text), a runs root that is a file or too long, a ledger that is
garbage or locked by another connection. Each case runs the real CLI in-process.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from swinctl.recipes import RECIPES_DIR
from swinctl.runs.ledger import Ledger, RunRecord

RECIPE = (RECIPES_DIR / "upernet-swin-t.yaml").read_text()


class Evil:
    """Unpickling this runs code: it writes the marker file. A weights-only load refuses it by name."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Checkpoints and scripts the cases point at; `PWNED` must never appear here."""
    from swinctl.models import SwinTransformer

    d = tmp_path_factory.mktemp("inputs")
    marker = d / "PWNED"
    backbone = SwinTransformer(embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=4).state_dict()
    detector = {f"backbone.{k}": v for k, v in backbone.items()} | {"decode_head.conv_seg.weight": torch.zeros(2, 2)}
    torch.save({"state_dict": detector, "meta": {"iter": 1}}, d / "model.pth")
    torch.save({"state_dict": detector, "evil": Evil(marker)}, d / "evil.pth")
    torch.save({"state_dict": detector, "write": np.ndarray.tofile}, d / "getattr.pth")
    torch.save({"state_dict": detector, "evil": Evil(marker)}, d / "legacy-evil.pth",
               _use_new_zipfile_serialization=False)
    (d / "pickle-evil.pth").write_bytes(pickle.dumps({"state_dict": {}, "evil": Evil(marker)}, protocol=4))
    torch.save(backbone, d / "backbone.pth")
    torch.save({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}, d / "resnet.pth")
    torch.save([1, 2, 3], d / "list.pth")
    torch.save({"epoch": 3, "note": "no weights"}, d / "notensors.pth")
    data = (d / "model.pth").read_bytes()
    (d / "truncated.pth").write_bytes(data[: len(data) // 2])
    (d / "empty.pth").write_bytes(b"")
    (d / "text.pth").write_text("these are not weights\n")
    (d / "garbage.pth").write_bytes(os.urandom(4096))
    (d / "dir.pth").mkdir()
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    (d / "a-file").write_text("not a directory\n")
    return d


def recipe_text(**changes) -> str:
    """The UPerNet recipe with dotted keys changed (None deletes)."""
    data = yaml.safe_load(RECIPE)
    for key, value in changes.items():
        node = data
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


BOMB = textwrap.dedent("""\
    a: &a [x, x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
    """)

# the same in one line of flow style, as a --set value: 10^8 values from a few hundred bytes
FLOW_BOMB = "[&a [x,x,x,x,x,x,x,x,x,x], " + ", ".join(
    f"&{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcdefg", "bcdefgh", strict=False)) + "]"


@dataclass
class Case:
    id: str
    args: list[str]  # {f}: the fixture files, {w}: this case's own files, {root}: the runs root
    message: str
    write: dict[str, str | bytes] = field(default_factory=dict)  # name -> content, under {w}
    env: dict[str, str] = field(default_factory=dict)
    runs: int = 0  # PENDING runs in the ledger before the command (selectors); they must stay PENDING
    root: str | None = None  # the runs root, if not {w}/runs (formatted like args)
    code: int = 2


RUN = ["run", "{w}/r.yaml", "--smoke", "--executor", "local"]
DRY = ["--dry-run"]
UPER = ["run", "upernet-swin-t", "--smoke", "--executor", "local"]
SHOW = ["show", "upernet-swin-t", "--config", "--smoke"]
TEST = ["test", "upernet-swin-t", "--smoke", "--executor", "local", "--checkpoint"]
LONG = "x" * 300


def recipe_case(id_: str, message: str, text: str | bytes, *extra: str) -> Case:
    return Case(id_, [*RUN, *extra], message, write={"r.yaml": text})


def sweep_case(id_: str, message: str, text: str | bytes, *extra: str) -> Case:
    return Case(id_, ["sweep", "{w}/s.yaml", "--executor", "local", "--dry-run", *extra], message,
                write={"s.yaml": text})


SWEEP = "recipe: upernet-swin-t\nsmoke: true\ngrid:\n  optimizer.lr: [1.0e-4, 2.0e-4]\n"

CASES = [
    # ------------------------------------------------------------------ recipe names: never a path
    recipe_case("name-dotdot", "recipe name '../../../tmp/x'", recipe_text(name="../../../tmp/x")),
    recipe_case("name-300", "at most 80 characters", recipe_text(name=LONG)),
    recipe_case("name-slash", "recipe name 'a/b'", recipe_text(name="a/b")),
    recipe_case("name-empty", "recipe name ''", recipe_text(name="")),
    recipe_case("name-space", "recipe name 'my run'", recipe_text(name="my run")),
    recipe_case("name-dot", "recipe name '.hidden'", recipe_text(name=".hidden")),
    recipe_case("name-dotdot-only", "recipe name '..'", recipe_text(name="..")),
    recipe_case("name-newline", "recipe name", recipe_text(name="a\nb")),
    recipe_case("name-number", "key 'name'", recipe_text(name=12)),
    Case("set-name-dotdot", [*UPER, "--set", "name=../../x"], "recipe name '../../x'"),
    Case("set-name-300", [*UPER, "--set", f"name={LONG}"], "at most 80 characters"),
    # ------------------------------------------------------------------ bases: only the codebases' config trees
    recipe_case("base-abs", "base '{f}/evil.py'", recipe_text(bases=["{f}/evil.py"])),
    recipe_case("base-rel", "base 'evil.py'", recipe_text(bases=["evil.py"])),
    recipe_case("base-escape", "base 'mmseg::../../evil.py'", recipe_text(bases=["mmseg::../../evil.py"])),
    recipe_case("base-inner-escape", "base 'mmseg::_base_/../../x.py'",
                recipe_text(bases=["mmseg::_base_/../../x.py"])),
    recipe_case("base-root", "base 'mmseg::/etc/x.py'", recipe_text(bases=["mmseg::/etc/x.py"])),
    recipe_case("base-other-codebase", "a mmseg recipe builds on mmseg:: configs",
                recipe_text(bases=["mmdet::_base_/default_runtime.py"])),
    recipe_case("base-not-py", "base 'mmseg::_base_/x.yaml'", recipe_text(bases=["mmseg::_base_/x.yaml"])),
    recipe_case("base-scheme", "base 'http://x/evil.py'", recipe_text(bases=["http://x/evil.py"])),
    Case("set-bases-dry-run", [*UPER, *DRY, "--set", "bases=[{f}/evil.py]"], "base '{f}/evil.py'"),
    Case("set-bases-show", [*SHOW, "--set", "bases=[{f}/evil.py]"], "base '{f}/evil.py'"),
    Case("set-recipe-bases", [*UPER, *DRY, "--set", "recipe.bases=[{f}/evil.py]"], "base '{f}/evil.py'"),
    # ------------------------------------------------------------------ config keys that import or execute
    recipe_case("config-custom-imports", "config key 'custom_imports",
                recipe_text(config={"custom_imports": {"imports": ["os"]}}), *DRY),
    recipe_case("config-base", "config key '_base_'", recipe_text(config={"_base_": ["{f}/evil.py"]}), *DRY),
    recipe_case("config-default-scope", "default_scope='evil'", recipe_text(config={"default_scope": "evil"}), *DRY),
    recipe_case("config-type-dotted", "model.type='os.system'", recipe_text(config={"model": {"type": "os.system"}}),
                *DRY),
    recipe_case("config-type-nested", "subprocess.Popen",
                recipe_text(config={"model.decode_head": {"type": "subprocess.Popen", "args": "touch x"}}), *DRY),
    recipe_case("config-scope-key", "_scope_='evil'", recipe_text(config={"model": {"_scope_": "evil"}}), *DRY),
    recipe_case("smoke-config-custom-imports", "config key 'custom_imports",
                recipe_text(smoke__config={"custom_imports.imports": ["os"]}), *DRY),
    Case("set-custom-imports", [*SHOW, "--set", "custom_imports.imports=[os]"], "config key 'custom_imports"),
    Case("set-cfg-custom-imports", [*UPER, *DRY, "--set", "cfg.custom_imports=[os]"], "config key 'custom_imports"),
    Case("set-default-scope", [*UPER, *DRY, "--set", "default_scope=evil"], "default_scope='evil'"),
    Case("set-model-type", [*UPER, *DRY, "--set", "model.type=os.system"], "model.type='os.system'"),
    Case("set-backbone-type", [*SHOW, "--set", "model.backbone.type=subprocess.Popen"], "subprocess.Popen"),
    Case("set-pipeline-type", [*UPER, *DRY, "--set", "train_dataloader.dataset.pipeline.0.type=builtins.exec"],
         "builtins.exec"),
    Case("set-base-key", [*UPER, *DRY, "--set", "cfg._base_=x"], "config key '_base_'"),
    Case("set-type-list", [*UPER, *DRY, "--set", "custom_hooks=[{type: os.system}]"], "os.system"),
    # ------------------------------------------------------------------ strings that become sbatch lines
    recipe_case("sbatch-arg-newline", "resources.sbatch_args.gres",
                recipe_text(resources__sbatch_args={"gres": "gpu:1\nrm -rf ~"})),
    recipe_case("sbatch-arg-option", "sbatch option '--wrap'", recipe_text(resources__sbatch_args={"--wrap": "x"})),
    recipe_case("partition-newline", "resources.partition", recipe_text(resources__partition="gpu\ncurl x | sh")),
    recipe_case("setup-newline", "resources.setup line", recipe_text(resources__setup=["module load a\nrm -rf ~"])),
    Case("set-partition-newline", [*UPER, "--set", 'resources.partition="gpu\\nrm -rf ~"'], "resources.partition"),
    Case("set-account-tab", [*UPER, "--set", "resources.account=a\tb"], "resources.account"),
    # ------------------------------------------------------------------ recipe files: YAML, encoding, size, shape
    recipe_case("yaml-duplicate-key", "duplicate key 'name'", RECIPE + "name: again\n"),
    recipe_case("yaml-duplicate-nested", "duplicate key 'lr'", RECIPE.replace("  lr: 6.0e-5\n",
                                                                             "  lr: 6.0e-5\n  lr: 1.0e-3\n")),
    recipe_case("yaml-alias-bomb", "alias bomb", RECIPE + "config:\n  bomb:\n" + textwrap.indent(BOMB, "    ")),
    recipe_case("yaml-recursive-alias", "a recursive alias", RECIPE + "config:\n  loop: &l [1, *l]\n"),
    recipe_case("yaml-too-large", "too large for a recipe file", RECIPE + "# " + "x" * (1 << 20) + "\n"),
    recipe_case("yaml-latin1", "not UTF-8 text", RECIPE.replace("UPerNet + Swin-T, ADE20K",
                                                                 "UPerNet Swin-T \xe9t\xe9").encode("latin-1")),
    recipe_case("yaml-binary", "not UTF-8 text", b"\xff\xfe\x00\x01" * 64),
    recipe_case("yaml-syntax", "not valid YAML", "name: [unclosed\n"),
    recipe_case("yaml-tab", "not valid YAML", "name: x\n\tcodebase: mmseg\n"),
    recipe_case("yaml-python-tag", "not valid YAML", "name: !!python/object/apply:os.system ['touch x']\n"),
    recipe_case("yaml-list", "a recipe is a YAML mapping", "- a\n- b\n"),
    recipe_case("yaml-empty", "a recipe is a YAML mapping", ""),
    recipe_case("yaml-scalar", "a recipe is a YAML mapping", "just a string\n"),
    Case("recipe-is-dir", ["run", "{w}/d.yaml", "--smoke", "--executor", "local"], "recipe file not found",
         write={"d.yaml/x": "x"}),
    Case("recipe-missing", ["run", "{w}/nope.yaml", "--smoke", "--executor", "local"], "recipe file not found"),
    recipe_case("recipe-unknown-key", "unknown key 'optimizer.lrr'", RECIPE.replace("  lr: 6.0e-5", "  lrr: 6.0e-5")),
    recipe_case("recipe-wrong-type", "key 'schedule.max_iters'", recipe_text(schedule__max_iters="many")),
    recipe_case("recipe-codebase", "key 'codebase'", recipe_text(codebase="mmpose")),
    recipe_case("recipe-missing-field", "missing required key 'bases'", recipe_text(bases=None)),
    Case("unknown-recipe", ["run", "no-such-recipe", "--executor", "local"], "unknown recipe 'no-such-recipe'"),
    # ------------------------------------------------------------------ checkpoints: test --checkpoint
    Case("ckpt-missing", [*TEST, "{f}/absent.pth"], "no such file"),
    Case("ckpt-empty", [*TEST, "{f}/empty.pth"], "is empty (0 bytes)"),
    Case("ckpt-text", [*TEST, "{f}/text.pth"], "not a torch checkpoint"),
    Case("ckpt-garbage", [*TEST, "{f}/garbage.pth"], "not a torch checkpoint"),
    Case("ckpt-truncated", [*TEST, "{f}/truncated.pth"], "damaged or truncated"),
    Case("ckpt-evil", [*TEST, "{f}/evil.pth"], "will not unpickle (Unsupported global"),
    Case("ckpt-evil-dry-run", [*TEST, "{f}/evil.pth", *DRY], "will not unpickle"),
    Case("ckpt-getattr", [*TEST, "{f}/getattr.pth"], "refused getattr(ndarray, 'tofile')"),
    Case("ckpt-dir", [*TEST, "{f}/dir.pth"], "(a directory)"),
    Case("ckpt-backbone-only", [*TEST, "{f}/backbone.pth"], "not a detector/segmentor checkpoint"),
    Case("ckpt-list", [*TEST, "{f}/list.pth"], "holds a list, not a checkpoint dict"),
    Case("ckpt-no-tensors", [*TEST, "{f}/notensors.pth"], "no tensors found"),
    # ------------------------------------------------------------------ checkpoints: load_from and pretrained
    Case("load-from-missing", [*UPER, "--set", "load_from={f}/absent.pth"], "load_from: {f}/absent.pth: no such file"),
    Case("load-from-evil", [*UPER, "--set", "load_from={f}/evil.pth"], "load_from: {f}/evil.pth: holds Python objects"),
    Case("load-from-evil-dry", [*UPER, *DRY, "--set", "load_from={f}/evil.pth"], "will not unpickle"),
    Case("load-from-text", [*UPER, "--set", "load_from={f}/text.pth"], "not a torch checkpoint"),
    Case("load-from-empty", [*UPER, "--set", "load_from={f}/empty.pth"], "is empty"),
    Case("load-from-truncated", [*UPER, "--set", "load_from={f}/truncated.pth"], "damaged or truncated"),
    Case("load-from-backbone", [*UPER, "--set", "load_from={f}/backbone.pth"], "not a detector/segmentor"),
    recipe_case("recipe-load-from-evil", "will not unpickle", recipe_text(config={"load_from": "{f}/evil.pth"})),
    Case("pretrained-missing", [*UPER, "--set", "model.backbone.pretrained={f}/absent.pth"],
         "model.backbone.init_cfg.checkpoint: {f}/absent.pth: no such file"),
    Case("pretrained-evil", [*UPER, "--set", "model.backbone.pretrained={f}/evil.pth"], "will not unpickle"),
    Case("pretrained-evil-dry", [*UPER, *DRY, "--set", "model.backbone.pretrained={f}/evil.pth"], "will not unpickle"),
    Case("pretrained-resnet", [*UPER, "--set", "model.backbone.pretrained={f}/resnet.pth"],
         "not a Swin Transformer checkpoint"),
    Case("pretrained-text", [*UPER, "--set", "model.backbone.pretrained={f}/text.pth"], "not a torch checkpoint"),
    Case("pretrained-dir", [*UPER, "--set", "model.backbone.pretrained={f}/dir.pth"], "(a directory)"),
    Case("pretrained-empty", [*UPER, "--set", "model.backbone.pretrained={f}/empty.pth"], "is empty"),
    recipe_case("init-cfg-evil", "model.backbone.init_cfg.checkpoint: {f}/evil.pth: holds Python objects",
                recipe_text(config={"model.backbone.init_cfg": {"_delete_": True, "type": "Pretrained",
                                                                "checkpoint": "{f}/evil.pth"}})),
    recipe_case("config-dict-onto-none", "config key 'model.backbone.init_cfg'",
                recipe_text(config={"model.backbone.init_cfg": {"type": "Pretrained"}}), *DRY),
    # ------------------------------------------------------------------ convert-checkpoint
    Case("convert-missing", ["convert-checkpoint", "{f}/absent.pth", "{w}/out.pth"], "checkpoint not found"),
    Case("convert-evil", ["convert-checkpoint", "{f}/evil.pth", "{w}/out.pth"], "will not unpickle"),
    Case("convert-text", ["convert-checkpoint", "{f}/text.pth", "{w}/out.pth"], "not a torch checkpoint"),
    Case("convert-truncated", ["convert-checkpoint", "{f}/truncated.pth", "{w}/out.pth"], "damaged or truncated"),
    Case("convert-resnet", ["convert-checkpoint", "{f}/resnet.pth", "{w}/out.pth"], "not a Swin Transformer"),
    Case("convert-dst-dir", ["convert-checkpoint", "{f}/backbone.pth", "{f}/dir.pth"], "is a directory"),
    Case("convert-dst-is-src", ["convert-checkpoint", "{f}/backbone.pth", "{f}/backbone.pth"],
         "is the source checkpoint"),
    Case("convert-dst-same-file", ["convert-checkpoint", "{f}/backbone.pth", "{f}/./backbone.pth"],
         "is the source checkpoint"),
    Case("convert-dst-under-file", ["convert-checkpoint", "{f}/backbone.pth", "{f}/a-file/out.pth"],
         "is a file, not a directory"),
    Case("convert-dst-unwritable", ["convert-checkpoint", "{f}/backbone.pth", "/proc/nope/x.pth"],
         "/proc/nope/x.pth: cannot write the converted checkpoint there"),
    Case("convert-legacy-evil", ["convert-checkpoint", "{f}/legacy-evil.pth", "{w}/out.pth"],
         "will not unpickle (Unsupported global exec)"),
    Case("convert-pickle-evil", ["convert-checkpoint", "{f}/pickle-evil.pth", "{w}/out.pth"],
         "will not unpickle (Unsupported global exec)"),
    Case("ckpt-pickle-evil", [*TEST, "{f}/pickle-evil.pth"], "will not unpickle (Unsupported global exec)"),
    Case("convert-bad-target", ["convert-checkpoint", "{f}/backbone.pth", "{w}/out.pth", "--to", "timm"],
         "--to timm: choose one of swinctl, mmdet"),
    Case("convert-bad-shape", ["convert-checkpoint", "{f}/backbone.pth", "{w}/out.pth", "--shape", "head"],
         "--shape head: choose one of keep, model, backbone"),
    Case("convert-window-zero", ["convert-checkpoint", "{f}/backbone.pth", "{w}/out.pth", "--window-size", "0"],
         "--window-size"),
    # ------------------------------------------------------------------ --set syntax
    Case("set-no-equals", [*UPER, "--set", "lr"], "not of the form dotted.key=value"),
    Case("set-empty-key", [*UPER, "--set", "=1"], "not of the form dotted.key=value"),
    Case("set-empty-part", [*UPER, "--set", "optimizer..lr=1"], "not of the form dotted.key=value"),
    Case("set-mapping", [*UPER, "--set", "optimizer.lr={a: 1}"], "set one key at a time"),
    Case("set-bad-yaml", [*UPER, "--set", "optimizer.lr=[unclosed"], "not a YAML scalar or list"),
    Case("set-python-tag", [*UPER, "--set", "optimizer.lr=!!python/name:os.system"], "not a YAML scalar or list"),
    Case("set-unknown-recipe-key", [*UPER, "--set", "optimizer.lrr=1"], "unknown key 'optimizer.lrr'"),
    Case("set-unknown-config-key", [*UPER, *DRY, "--set", "optim_wrapper.optimizer.lrr=1"], "unknown key"),
    Case("set-wrong-type", [*UPER, "--set", "optimizer.lr=fast"], "key 'optimizer.lr'"),
    Case("set-unclosed", [*UPER, "--set", "cfg.x=" + "[" * 30], "not a YAML scalar or list"),
    Case("set-alias-bomb", [*UPER, *DRY, "--set", "cfg.x=" + FLOW_BOMB], "alias bomb"),
    Case("set-config-typo", [*UPER, *DRY, "--set", "optim_wrapper.optimizer.lrr=1"],
         "closest valid keys: optim_wrapper.optimizer.lr"),
    Case("heads-not-divisible", [*UPER, "--set", "model.backbone.num_heads=[5,6,12,24]"], "not divisible by 5 heads"),
    Case("tasks-with-gpus", [*UPER, "--gpus", "8", "--set", "resources.tasks_per_node=2"],
         "GPU jobs run one task per GPU: drop resources.tasks_per_node"),
    Case("loss-scale-without-amp", [*UPER, "--set", "precision.loss_scale=512"], "loss_scale only applies with amp"),
    Case("coco-missing", ["run", "maskrcnn-swin-t", "--executor", "local", "--set", "data.root=/nowhere/coco"],
         "COCO not found at /nowhere/coco (expected annotations/instances_train2017.json): pass --set data.root=... "
         "or use --smoke"),
    Case("ade-missing", ["run", "upernet-swin-t", "--executor", "local", "--set", "data.root=/nowhere/ade"],
         "ADE20K not found"),
    Case("smoke-ade-missing", [*UPER, "--set", "data.root=/nowhere/ade"], "ADE20K not found at /nowhere/ade"),
    Case("smoke-coco-missing", ["run", "maskrcnn-swin-t", "--smoke", "--executor", "local", "--set",
                                "data.root=/nowhere/coco"], "COCO not found at /nowhere/coco"),
    Case("smoke-ade-missing-sweep", ["sweep", "upernet-swin-t", "--smoke", "--grid", "optimizer.lr=1e-4,2e-4",
                                     "--executor", "local", "--set", "data.root=/nowhere/ade"], "ADE20K not found"),
    # ------------------------------------------------------------------ other options
    Case("wandb-bogus", [*UPER, "--wandb", "bogus"], "--wandb bogus: choose one of auto, online, offline, disabled"),
    Case("wandb-bogus-dry", [*UPER, *DRY, "--wandb", "bogus"], "--wandb bogus"),
    Case("executor-bogus", ["run", "upernet-swin-t", "--smoke", "--executor", "pbs"],
         "--executor pbs: choose one of auto, local, slurm"),
    Case("test-after-bogus", [*UPER, "--test-after", "first"], "--test-after first: choose one of last, best"),
    Case("recipes-task-bogus", ["recipes", "--task", "keypoints"],
         "--task keypoints: choose one of detection, instance, panoptic, semantic"),
    Case("recipes-codebase-bogus", ["recipes", "--codebase", "mmpose"],
         "--codebase mmpose: choose one of mmdet, mmseg"),
    Case("run-no-recipe", ["run"], "Missing argument 'RECIPE'"),
    Case("run-unknown-option", [*UPER, "--gpu", "1"], "No such option: --gpu"),
    Case("unknown-verb", ["train", "upernet-swin-t"], "No such command 'train'"),
    Case("time-bogus", [*UPER, "--time", "soon"], "is not a SLURM time"),
    Case("gpus-do-not-fit", [*UPER, "--gpus", "12", "--gpus-per-node", "8"], "set resources.nodes=2"),
    Case("demo-bogus", ["data", "demo", "bogus", "--root", "{w}/demo"],
         "KIND bogus: choose one of coco, ade20k, cityscapes, all"),
    Case("smoke-profile-bogus", [*UPER, "--smoke-profile", "quick"],
         "--smoke-profile quick: choose one of fast, learn"),
    Case("smoke-profile-learn-without-one", ["run", "dino-swin-l-12e-coco", "--smoke-profile", "learn", *DRY],
         "recipe 'dino-swin-l-12e-coco' has no learning smoke profile"),
    Case("config-without-dry-run", [*UPER, "--config"], "--config prints the rendered config of a dry run"),
    # ------------------------------------------------------------------ sweep files and sweep options
    sweep_case("sweep-latin1", "not UTF-8 text", (SWEEP + "# \xe9\n").encode("latin-1")),
    sweep_case("sweep-duplicate", "duplicate key 'grid'", SWEEP + "grid:\n  optimizer.lr: [1.0]\n"),
    sweep_case("sweep-alias-bomb", "alias bomb", SWEEP + "set:\n  x:\n" + textwrap.indent(BOMB, "    ")),
    sweep_case("sweep-too-large", "too large for a sweep or recipe file", SWEEP + "# " + "x" * (1 << 20) + "\n"),
    sweep_case("sweep-name-dotdot", "sweep name '../x'", SWEEP + "name: ../x\n"),
    sweep_case("sweep-bases", "base '{f}/evil.py'", SWEEP.replace("optimizer.lr: [1.0e-4, 2.0e-4]",
                                                                   "bases: [[\"{f}/evil.py\"]]")),
    sweep_case("sweep-custom-imports", "config key 'custom_imports",
               SWEEP.replace("optimizer.lr: [1.0e-4, 2.0e-4]", "custom_imports.imports: [[os], [sys]]")),
    sweep_case("sweep-unknown-recipe", "unknown recipe 'nope'", SWEEP.replace("upernet-swin-t", "nope")),
    sweep_case("sweep-unknown-key", "unknown key 'grd'", SWEEP.replace("grid:", "grd:")),
    Case("sweep-cli-name", ["sweep", "upernet-swin-t", "--smoke", "--grid", "optimizer.lr=1e-4,2e-4", "--name", "../x",
                            "--executor", "local", "--dry-run"], "sweep name '../x'"),
    Case("sweep-cli-bases", ["sweep", "upernet-swin-t", "--smoke", "--grid", "bases=[{f}/evil.py]",
                             "--executor", "local", "--dry-run"], "base '{f}/evil.py'"),
    Case("sweep-cli-wandb", ["sweep", "upernet-swin-t", "--smoke", "--grid", "optimizer.lr=1e-4,2e-4",
                             "--executor", "local", "--wandb", "bogus"], "--wandb bogus"),
    # ------------------------------------------------------------------ runs roots and ledgers
    Case("root-is-file", UPER, "is a file, not a directory", root="{f}/a-file"),
    Case("root-is-file-status", ["status"], "is a file, not a directory", root="{f}/a-file"),
    Case("root-is-file-report", ["report"], "is a file, not a directory", root="{f}/a-file"),
    Case("root-under-file", UPER, "cannot create the runs root", root="{f}/a-file/runs"),
    Case("root-too-long", UPER, "File name too long", root="{w}/" + "r" * 300),
    Case("root-too-long-status", ["status"], "File name too long", root="{w}/" + "r" * 300),
    Case("ledger-garbage", UPER, "is damaged", write={"runs/ledger.sqlite": b"not sqlite " * 100}),
    Case("ledger-garbage-status", ["status", "--all"], "is damaged", write={"runs/ledger.sqlite": b"\x00\xff" * 2048}),
    Case("ledger-garbage-report", ["report"], "is damaged", write={"runs/ledger.sqlite": b"garbage" * 600}),
    Case("ledger-is-dir", ["status"], "is not a file", write={"runs/ledger.sqlite/x": "x"}),
    # ------------------------------------------------------------------ selectors of destructive and single-run verbs
    Case("cancel-empty", ["cancel", ""], "an empty run id selects nothing", runs=2),
    Case("cancel-space", ["cancel", " "], "an empty run id selects nothing", runs=2),
    Case("cancel-ambiguous", ["cancel", "demo-run"], "matches 2 runs", runs=2),
    Case("cancel-recipe", ["cancel", "upernet-swin-t"], "is a recipe", runs=2),
    Case("cancel-one-bad-of-two", ["cancel", "demo-run-0", "nope"], "no run 'nope'", runs=2),
    Case("cancel-unknown", ["cancel", "nope-123"], "no run 'nope-123'"),
    Case("logs-empty", ["logs", ""], "an empty run id selects nothing", runs=2),
    Case("logs-ambiguous", ["logs", "demo"], "matches 2 runs", runs=2),
    Case("logs-unknown", ["logs", "nope"], "no run 'nope'"),
    Case("status-empty", ["status", ""], "no run id, short id, sweep or recipe ''", runs=2),
    Case("status-unknown", ["status", "nope"], "no run id, short id, sweep or recipe 'nope'"),
    Case("report-out-dir", ["report", "--out", "{f}/dir.pth", "--format", "html"], "{f}/dir.pth"),
    Case("report-out-missing-dir", ["report", "--out", "{w}/no/such/dir/r.html", "--format", "html"],
         "{w}/no/such/dir"),
    Case("report-out-under-file", ["report", "--out", "{f}/a-file/r.md", "--format", "md"], "a-file"),
    Case("report-import-missing", ["report", "--import", "{w}/nowhere"], "{w}/nowhere"),
    Case("report-format-bogus", ["report", "--format", "pdf"],
         "--format pdf: choose one of table, md, csv, json, html"),
    Case("report-source-bogus", ["report", "--source", "s3"], "s3"),
    Case("report-best-last", ["report", "--best", "--last"], "--best and --last exclude each other"),
]


def _tree(path: Path) -> set[Path]:
    return {p for p in path.rglob("*")} if path.exists() else set()


def _fill(text: str, **paths: Path) -> str:
    """{f} and {w} -> their paths; other braces (YAML flow mappings) stay."""
    for key, value in paths.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long to stat
        return False


def _add_runs(root: Path, n: int) -> None:
    ledger = Ledger(root)
    for i in range(n):
        run_dir = root / f"demo-run-{i}"
        ledger.add(RunRecord(id=f"demo-run-{i}", kind="train", recipe="upernet-swin-t", codebase="mmseg",
                             overrides=[], signature="s", executor="local", job_id=None, state="PENDING",
                             smoke=True, run_dir=run_dir, work_dir=run_dir / "work_dir", sweep=None, seed=None,
                             gpus=0))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case: Case, cli, files, tmp_path, monkeypatch):
    work = tmp_path / "w"
    work.mkdir()
    fmt = dict(f=files, w=work)
    for name, content in case.write.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(_fill(content, **fmt))
    root = Path(_fill(case.root, **fmt)) if case.root else work / "runs"
    monkeypatch.setenv("SWINCTL_RUNS", str(root))
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if case.runs:
        _add_runs(root, case.runs)
    before = _tree(tmp_path) | _tree(files)

    result = cli(*[_fill(arg, **fmt) for arg in case.args])

    out = result.output
    assert result.exit_code == case.code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    assert result.stderr.count("error:") == 1, result.stderr
    flat = " ".join(result.stderr.split())
    assert " ".join(_fill(case.message, **fmt).split()) in flat, result.stderr
    assert not (files / "PWNED").exists(), "a crafted input ran code"
    ledger_files = {root / n for n in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm")}
    left = (_tree(tmp_path) | _tree(files)) - before - ledger_files - {root}
    assert not left, f"left behind: {sorted(map(str, left))}"
    if case.runs:
        runs = Ledger(root).list_runs()
        assert [r.state for r in runs] == ["PENDING"] * case.runs
    elif _is_dir(root) and (root / "ledger.sqlite").is_file() and "ledger" not in case.id:
        assert Ledger(root).list_runs() == []


def test_the_table_is_large():
    assert len(CASES) >= 100 and len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------------------------- beyond the table


def test_locked_ledger_is_one_error_and_leaves_no_run_directory(cli, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    Ledger(root)
    monkeypatch.setenv("SWINCTL_RUNS", str(root))
    monkeypatch.setenv("SWINCTL_LEDGER_TIMEOUT", "0.2")
    holder = sqlite3.connect(root / "ledger.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another swinctl in the middle of a write
    try:
        result = cli("run", "upernet-swin-t", "--smoke", "--executor", "local")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 2, result.output
    assert "stayed locked by another process" in result.stderr and "Traceback" not in result.output
    assert [p.name for p in root.iterdir() if not p.name.startswith("ledger.sqlite")] == []
    assert Ledger(root).list_runs() == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as another user")
def test_read_only_runs_root_is_one_error(tmp_path):
    """As an unprivileged user (root may write anywhere): a runs root the user cannot write."""
    base = Path("/tmp") / f"swinctl-ro-{os.getpid()}"
    base.mkdir(mode=0o755)
    try:
        root = base / "runs"
        root.mkdir(mode=0o555)
        env = dict(os.environ, SWINCTL_RUNS=str(root), HOME=str(base), SWINCTL_DATA=os.environ["SWINCTL_DATA"])
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                               "swinctl.cli", "status"], capture_output=True, text=True, env=env, cwd=base)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "is not writable" in done.stderr and "Traceback" not in done.stderr
        assert list(root.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_a_job_refuses_a_crafted_checkpoint_it_downloads(tmp_path, files, monkeypatch):
    """A URL is not fetched before queueing, so the job itself must load it weights-only: a real smoke job whose
    backbone's pretrained URL serves the crafted pickle (through mmengine's http loader and torch.hub) fails, names
    the refused global, and runs nothing."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(files))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = tmp_path / "runs"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # torch.hub's download cache
    try:
        from typer.testing import CliRunner

        from swinctl.cli import app

        url = f"http://127.0.0.1:{server.server_address[1]}/evil.pth"
        result = CliRunner().invoke(app, ["run", "upernet-swin-t", "--smoke", "--executor", "local", "--wait",
                                          "--runs-root", str(root), "--set", f"model.backbone.pretrained={url}"],
                                    env={**os.environ, "COLUMNS": "200"})
    finally:
        server.shutdown()
    [record] = Ledger(root).list_runs()
    assert result.exit_code == 1 and record.state == "FAILED", result.output
    assert not (files / "PWNED").exists(), "the job unpickled the crafted checkpoint"
    stderr = "".join(p.read_text() for p in (record.run_dir / "submitit").glob("*_log.err"))
    assert "Unsupported global" in stderr and "exec" in stderr


# ---------------------------------------------------------------------------------------------- logs that lie

FIXTURES = Path(__file__).parent / "fixtures" / "logs" / "mmengine"


def _diverged_copy(tmp_path: Path) -> Path:
    """A real MMEngine work dir whose last validation logged NaN (json.dump writes NaN, json.loads reads it)."""
    work = tmp_path / "det_diverged"
    shutil.copytree(FIXTURES / "det_epoch", work)
    [scalars] = work.glob("*/vis_data/scalars.json")
    with scalars.open("a") as out:
        out.write('{"lr": 0.04, "loss": NaN, "epoch": 4, "iter": 26, "step": 26}\n'
                  '{"coco/bbox_mAP": NaN, "coco/segm_mAP": NaN, "data_time": 0.0003, "time": 0.001, "step": 4}\n')
    return work


def test_a_nan_last_validation_is_divergence_not_silence(tmp_path, cli, runs_root):
    from swinctl import results

    work = _diverged_copy(tmp_path)
    log = results.read_work_dir(work)
    assert results.DIVERGED in log.flags and log.diverged == ["bbox_mAP", "segm_mAP"]
    assert any("NaN or Infinity" in p for p in log.problems)
    healthy = results.read_work_dir(FIXTURES / "det_epoch")
    assert results.DIVERGED not in healthy.flags
    result = cli("report", "--import", work, "--format", "json")
    assert result.exit_code == 0, result.output
    import json

    [run] = json.loads(result.stdout)["runs"]
    assert {r["verdict"] for r in run["results"]} == {"diverged"}
    assert "diverged" in cli("report", "--import", work).stdout


def test_a_directory_of_binary_garbage_is_flagged_unreadable(tmp_path, cli, runs_root):
    from swinctl import results

    work = tmp_path / "garbage"
    (work / "20260101_000000" / "vis_data").mkdir(parents=True)
    (work / "20260101_000000" / "vis_data" / "scalars.json").write_bytes(os.urandom(8192).replace(b"\n", b"\x00"))
    (work / "20260101_000001.log.json").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4096))
    log = results.read_work_dir(work)
    assert results.UNREADABLE in log.flags and "binary or damaged" in " ".join(log.problems)
    result = cli("report", "--import", work)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "binary or damaged" in " ".join(result.output.split())


def test_damaged_lines_inside_scalars_are_flagged_without_the_training_history(tmp_path, cli, runs_root):
    """A report reads validations only; lines damaged in the middle of the file are still counted and flagged."""
    from swinctl import results

    work = tmp_path / "damaged"
    shutil.copytree(FIXTURES / "det_epoch", work)
    [scalars] = work.glob("*/vis_data/scalars.json")
    lines = scalars.read_bytes().split(b"\n")
    lines[1] = lines[1][:40] + b"\x00\x00\x00" + lines[1][60:]  # NULs inside a train line
    lines[4] = lines[4][12:]  # a line that lost its head
    scalars.write_bytes(b"\n".join(lines))
    for train in (True, False):
        log = results.read_work_dir(work, train=train)
        assert results.TRUNCATED in log.flags, (train, log.problems)
        assert "skipped 2 lines that are not JSON" in " ".join(log.problems)
    healthy = results.read_work_dir(FIXTURES / "det_epoch", train=False)
    assert results.TRUNCATED not in healthy.flags and not healthy.problems
    assert "skipped 2 lines" in " ".join(cli("report", "--import", work).output.split())


def test_a_valid_log_of_one_long_line_is_read_not_called_damaged(tmp_path):
    """50 MB of valid JSON in one line (a validation with a huge per-class table) is a log, not binary."""
    import json

    from swinctl import results

    work = tmp_path / "long"
    vis = work / "20260101_000000" / "vis_data"
    vis.mkdir(parents=True)
    table = {f"class_{i}": "x" * 1000 for i in range(25_000)}
    val = {"mIoU": 41.5, "aAcc": 80.0, "mAcc": 50.0, "step": 16, **table}
    text = json.dumps({"lr": 0.01, "loss": 1.0, "iter": 16, "step": 16}) + "\n" + json.dumps(val) + "\n"
    (vis / "scalars.json").write_text(json.dumps(val) + "\n" + text)
    assert (vis / "scalars.json").stat().st_size > 50 * 10**6
    log = results.read_work_dir(work, train=False)
    assert results.UNREADABLE not in log.flags, log.problems
    assert log.val and log.val[-1].metrics["mIoU"] == pytest.approx(41.5)
