"""Issue 12 through the real CLI and its modules: help shows every default, `status` and `report` select the
same runs, cost in CPU-hours where no GPU was used, `--out` is checked before anything is written, the JSON
validates against the schema generated from the data model, and `convert-checkpoint` keeps a checkpoint's shape
and takes --window-size."""

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from test_report import Runs, det

from swinctl import report, status
from swinctl.runs import cost, select
from swinctl.runs.ledger import Ledger


def words(text: str) -> str:
    """Help text as one line: rich's box characters out, wrapped lines joined."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


HELP_DEFAULTS = {
    ("report",): ["[default: (every run)]", "[default: (the recipe's expected metrics)]", "[default: table]",
                  "[default: local]"],
    ("status",): ["[default: (active and recent runs)]"],
    ("data", "demo"): ["[default: ($SWINCTL_DATA or ~/.cache/swinctl/data)]", "[default: all]"],
    ("sweep",): ["[default: (RECIPE-HASH of the space)]", "[default: (all on SLURM, 1 locally)]"],
    ("convert-checkpoint",): ["[default: swinctl]", "[default: (the checkpoint's)]", "[default: keep]"],
    ("run",): ["[default: auto]"],
}
RUNS_ROOT_VERBS = [("run",), ("test",), ("status",), ("logs",), ("cancel",), ("report",), ("sweep",)]


@pytest.mark.parametrize("verb", sorted(set(HELP_DEFAULTS) | set(RUNS_ROOT_VERBS)), ids=" ".join)
def test_help_shows_every_default(cli, verb):
    result = cli(*verb, "--help")
    assert result.exit_code == 0, result.output
    text = words(result.output)
    expected = list(HELP_DEFAULTS.get(verb, []))
    if verb in RUNS_ROOT_VERBS:
        expected.append("Where runs and the ledger live. [default: ($SWINCTL_RUNS or ./runs)]")
    for default in expected:
        assert default in text, f"{' '.join(verb)} --help lacks {default!r}:\n{result.output}"
    assert "default:" in text and "[default: ]" not in text


# ---------------------------------------------------------------------------------------------- selection


@pytest.fixture
def three_recipes(tmp_path):
    runs = Runs(tmp_path / "runs")
    a = runs.add(curve=det(0.426, 0.395))
    fp16 = runs.add(recipe="maskrcnn-swin-t-fp16", curve=det(0.425, 0.393))
    seg = runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_iter", curve={"mIoU": [40.0, 44.6]}, sweep="s")
    return runs, a, fp16, seg


def test_status_and_report_select_the_same_runs(three_recipes):
    runs, a, fp16, seg = three_recipes
    ledger = Ledger(runs.root)
    short = select.short_ids(r.id for r in ledger.list_runs())
    cases = {
        ("maskrcnn-swin-t",): [a.id],  # the recipe, not every id that starts with its name (the fp16 runs)
        ("maskrcnn-swin-t-fp16",): [fp16.id],
        ("maskrcnn-swin",): [a.id, fp16.id],  # a prefix of ids
        (short[seg.id],): [seg.id],  # a short id
        ("s", a.id): [a.id, seg.id],  # a sweep and a full id
    }
    for selectors, expected in cases.items():
        assert [r.id for r in select.select(ledger, list(selectors))] == expected, selectors
        assert [r.id for r in report.build_report(runs.root, list(selectors)).runs] == expected, selectors
    with pytest.raises(select.SelectionError, match="'nothing-like-it'"):
        select.select(ledger, ["nothing-like-it"])
    with pytest.raises(report.ReportError, match="'nothing-like-it' matches no run id"):
        report.build_report(runs.root, ["nothing-like-it"])


def test_no_match_hint_names_the_real_option(tmp_path, cli):
    result = cli("report", "maskrcnn-swin-t-2024", "--runs-root", str(tmp_path / "empty"))
    assert result.exit_code == 2 and "--runs-root" in result.stderr and "--root/" not in result.stderr


# ---------------------------------------------------------------------------------------------- cost


def write_resources(run_dir: Path, **resources) -> None:
    """Set `resources:` of the run's recipe.yaml as the recipe resolved for it would have them."""
    import yaml

    path = run_dir / "recipe.yaml"
    data = yaml.safe_load(path.read_text())
    data["resources"].update(resources)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_cost_in_cpu_hours_where_no_gpu_was_used(tmp_path):
    runs = Runs(tmp_path / "runs")
    cpu = runs.add(smoke=True, gpus=0, elapsed_s=1800.0, curve=det(0.1, 0.1))
    write_resources(cpu.run_dir, gpus=0, nodes=2, tasks_per_node=2, cpus_per_task=3)
    gpu = runs.add(gpus=16, elapsed_s=36000.0, curve=det(0.426, 0.395))
    write_resources(gpu.run_dir, gpus=16, nodes=2)
    rep = report.build_report(runs.root)
    rows = {r.id: r for r in rep.runs}
    assert rows[cpu.id].cost == cost.Cost("CPU-h", 6.0, 12, 1.0)  # 2 nodes x 2 tasks x 3 cores for half an hour
    assert rows[cpu.id].gpu_hours is None
    assert rows[gpu.id].cost == cost.Cost("GPU-h", 160.0, 16, 20.0) and rows[gpu.id].gpu_hours == 160.0
    data = json.loads(report.render(rep, "json"))
    assert {r["id"]: r["cost"] for r in data["runs"]}[cpu.id] == {"unit": "CPU-h", "hours": 6.0, "devices": 12,
                                                                  "node_hours": 1.0}
    text = report.render(rep, "table")
    assert "6.00 CPU-h" in text and "160.0 GPU-h" in text
    csv_rows = report.render(rep, "csv").splitlines()
    assert "cost_unit" in csv_rows[0] and any(",CPU-h,6.0,1.0" in line for line in csv_rows)
    (row,) = [r for r in status.collect(Ledger(runs.root), [cpu.id])]
    assert row.cost == rows[cpu.id].cost and row.to_json()["cost"]["unit"] == "CPU-h"


def test_cost_unknown_without_a_recipe_yaml(tmp_path):
    runs = Runs(tmp_path / "runs")
    cpu = runs.add(smoke=True, gpus=0, curve=det(0.1, 0.1))
    (cpu.run_dir / "recipe.yaml").unlink()
    assert cost.cost(Ledger(runs.root).get(cpu.id)) is None  # its cores are not known: no guess


# ---------------------------------------------------------------------------------------------- --out


def test_out_is_checked_before_anything_is_written(three_recipes, tmp_path, cli):
    runs = three_recipes[0]
    folder = tmp_path / "reports"
    folder.mkdir()
    plots = tmp_path / "plots"
    for out, message in ((folder, "is a directory: give a file in it, e.g. --out"),
                         (tmp_path / "missing" / "r.html", "does not exist; create it first")):
        result = cli("report", "--format", "html", "--out", str(out), "--plots", str(plots), "--runs-root",
                     str(runs.root))
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "error:" in lines[0] and message in lines[0], result.stderr
        assert "Traceback" not in result.output
        assert not plots.exists() and list(folder.iterdir()) == [] and not (tmp_path / "missing").exists()
    plots.write_text("not a directory")
    result = cli("report", "--format", "html", "--out", str(folder / "r.html"), "--plots", str(plots),
                 "--runs-root", str(runs.root))
    assert result.exit_code == 2 and "--plots" in result.stderr and "is a file" in result.stderr
    assert list(folder.iterdir()) == []
    rep = report.build_report(runs.root)
    with pytest.raises(report.ReportError, match="is a directory"):
        report.render(rep, "md", folder)


def test_out_in_an_unwritable_directory(tmp_path):
    """As an unprivileged user (root may write anywhere, so a forked child drops to nobody first)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:  # pytest's base temp dir is private to its user
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest from here on, only the check and its answer
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            report.check_out(locked / "r.md", "md")
            answer = "no error"
        except report.ReportError as exc:
            answer = f"ERROR {exc}"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            answer = f"{type(exc).__name__}: {exc}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 4096).decode()
    os.waitpid(pid, 0)
    locked.chmod(0o755)
    assert answer == f"ERROR --out {locked / 'r.md'}: {locked} is not writable by you; choose a path you can write to"
    assert not (locked / "r.md").exists()


# ---------------------------------------------------------------------------------------------- JSON schema


def validate(value, schema: dict, root: dict, where: str = "$") -> None:
    """The subset of JSON Schema pydantic writes: $ref, anyOf, type, enum, const, properties, required,
    additionalProperties, items."""
    if "$ref" in schema:
        return validate(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, where)
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                return validate(value, option, root, where)
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: matches none of anyOf: {errors}")
    types = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "null": type(None),
             "array": list, "object": dict}
    if "type" in schema:
        expected = types[schema["type"]]
        assert isinstance(value, expected) and not (schema["type"] in ("integer", "number")
                                                    and isinstance(value, bool)), f"{where}: {value!r} not {schema}"
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(value), f"{where}: missing {set(schema['required']) - set(value)}"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{where}: unexpected {set(value) - set(props)}"
        for key, item in value.items():
            sub = props.get(key, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                validate(item, sub, root, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], root, f"{where}[{i}]")


def test_json_validates_against_the_generated_schema(three_recipes, tmp_path, cli):
    runs = three_recipes[0]
    runs.add(smoke=True, gpus=0, curve=det(0.1, 0.1), overrides=["seed=1"], seed=1)
    runs.add(smoke=True, gpus=0, curve=det(0.1, 0.1), overrides=["seed=2"], seed=2)
    schema = report.json_schema()
    imported = report.build_report(runs.root, import_dirs=[Path(__file__).parent / "fixtures" / "logs" / "mmcv1"])
    validate(json.loads(report.render(imported, "json")), schema, schema)
    data = json.loads(report.render(report.build_report(runs.root), "json"))
    assert data["groups"] and data["sweeps"] and data["runs"][0]["results"][0]["references"]
    validate(data, schema, schema)
    assert schema["properties"]["schema_version"] == {"const": 1, "type": "integer"}
    run_schema = schema["$defs"]["RunRow"]
    assert set(run_schema["properties"]) == set(data["runs"][0]) and "short_id" not in run_schema["properties"]
    broken = json.loads(json.dumps(data))
    broken["runs"][0]["verdict"] = "fine"
    with pytest.raises(AssertionError, match="not in"):
        validate(broken, schema, schema)
    result = cli("report", "--schema")
    assert result.exit_code == 0 and json.loads(result.stdout) == schema


# ---------------------------------------------------------------------------------------------- convert-checkpoint


def test_convert_checkpoint_keeps_the_shape_and_takes_window_size(tmp_path, cli):
    torch = pytest.importorskip("torch")
    from swinctl.models.checkpoints import detect_layout
    from swinctl.models.swin import SwinTransformer

    official = SwinTransformer(depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24)).state_dict()
    torch.save({"model": official}, tmp_path / "backbone.pth")
    result = cli("convert-checkpoint", str(tmp_path / "backbone.pth"), str(tmp_path / "out.pth"),
                 "--window-size", "12")
    assert result.exit_code == 0, result.output + result.stderr
    written = torch.load(tmp_path / "out.pth", weights_only=True)["state_dict"]
    assert not any(k.startswith("backbone.") for k in written)  # backbone weights stay backbone weights
    assert written["layers.0.blocks.0.attn.relative_position_bias_table"].shape == (23 * 23, 3)
    assert "resized 8" in words(result.stdout) and "as bare backbone keys" in words(result.stdout)
    assert detect_layout(written) == "official"

    result = cli("convert-checkpoint", str(tmp_path / "backbone.pth"), str(tmp_path / "model.pth"),
                 "--shape", "model")
    assert result.exit_code == 0, result.output
    assert all(k.startswith("backbone.") for k in torch.load(tmp_path / "model.pth", weights_only=True)["state_dict"])

    full = {f"backbone.{k}": v for k, v in official.items()} | {"neck.conv.weight": torch.zeros(2, 2)}
    torch.save({"state_dict": full}, tmp_path / "detector.pth")
    assert cli("convert-checkpoint", str(tmp_path / "detector.pth"), str(tmp_path / "det.pth")).exit_code == 0
    det_keys = set(torch.load(tmp_path / "det.pth", weights_only=True)["state_dict"])
    assert "neck.conv.weight" in det_keys and all(k.startswith(("backbone.", "neck.")) for k in det_keys)
    assert cli("convert-checkpoint", str(tmp_path / "detector.pth"), str(tmp_path / "bb.pth"), "--shape",
               "backbone").exit_code == 0
    assert not any(k.startswith(("backbone.", "neck.")) for k in torch.load(tmp_path / "bb.pth",
                                                                          weights_only=True)["state_dict"])
    # the MMDet/MMSeg layout: their Swin reads only backbone.* keys of a pretrained file, so it always has them
    assert cli("convert-checkpoint", str(tmp_path / "backbone.pth"), str(tmp_path / "mm.pth"), "--to",
               "mmdet").exit_code == 0
    assert all(k.startswith("backbone.") for k in torch.load(tmp_path / "mm.pth", weights_only=True)["state_dict"])
    bad = cli("convert-checkpoint", str(tmp_path / "backbone.pth"), str(tmp_path / "x.pth"), "--window-size", "0")
    assert bad.exit_code == 2 and not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize("pretrained", [123, {"checkpoint": "x.pth"}, ["x.pth"], ""])
def test_non_string_pretrained_is_rejected_when_the_backbone_is_built(pretrained):
    pytest.importorskip("torch")
    from mmengine.registry import MODELS

    import swinctl.models  # noqa: F401 - registers swinctl.SwinTransformer
    from swinctl.models.swin import SwinTransformer

    with pytest.raises(TypeError, match="pretrained must be a checkpoint path or URL"):
        SwinTransformer(depths=(2, 2, 2, 2), pretrained=pretrained)
    with pytest.raises(TypeError, match="pretrained must be a checkpoint path or URL"):
        MODELS.build(dict(type="swinctl.SwinTransformer", depths=(2, 2, 2, 2), pretrained=pretrained))
    model = SwinTransformer(depths=(2, 2, 2, 2), pretrained=Path("weights.pth"))  # a path is fine
    assert model.init_cfg == {"type": "Pretrained", "checkpoint": "weights.pth"}


def test_out_killed_mid_write_keeps_the_previous_report_whole(three_recipes, tmp_path):
    """`--out` goes to a temporary name and is renamed: a report killed halfway through writing (stopped there by
    the atomic writer's test hook, then SIGKILLed) leaves the previous report as it was and no partial file."""
    import signal
    import subprocess
    import sys

    from polling import wait_for

    from swinctl.job import checkpoints

    runs = three_recipes[0]
    out = tmp_path / "r.md"
    out.write_text("the previous report\n")
    child = subprocess.Popen([sys.executable, "-m", "swinctl.cli", "report", "--format", "md", "--out", str(out),
                              "--runs-root", str(runs.root)], env={**os.environ, checkpoints.STOP_IN_SAVE: "r.md"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T", 120,
                 "the report to stop halfway through writing --out")
        assert [p.name for p in tmp_path.glob("r.md.tmp-*")] == [f"r.md.tmp-{child.pid}"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert out.read_text() == "the previous report\n"
    done = subprocess.run([sys.executable, "-m", "swinctl.cli", "report", "--format", "md", "--out", str(out),
                           "--runs-root", str(runs.root)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("#") and "the previous report" not in out.read_text()
