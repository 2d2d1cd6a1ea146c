"""`status` and `report` read whole at 80 and 100 columns: no header, run id, state, number or verdict is folded
into fragments, no line is wider than the terminal, short run ids are shown (full ones with --wide), and columns
that are empty for every row are left out. Rendered with rich at the width a terminal would give, and through the
real CLI with COLUMNS set."""

import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text
from test_report import Runs, det

from swinctl import report, status, views
from swinctl.runs import select
from swinctl.runs.ledger import Ledger

WIDTHS = (80, 100)


def render(renderables, width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False).print(*renderables)
    return buf.getvalue()


def shown_tables(renderables, width: int) -> list[Table]:
    """The tables as laid out for `width` (the columns a FitTable keeps at that width)."""
    return [t._fitted(width) if isinstance(t, views.FitTable) else t for t in renderables if isinstance(t, Table)]


def assert_reads_whole(renderables, width: int) -> str:
    """Every word of every header and cell appears unbroken, as often as the tables hold it; no line overflows.
    Only free text (overrides, notes: the columns that fold) may break a word, one longer than its column."""
    text = render(renderables, width)
    lines = text.splitlines()
    assert max(cell_len(line.rstrip()) for line in lines) <= width, text
    rendered = Counter(word for line in lines for word in line.split())
    expected: Counter = Counter()
    for table in shown_tables(renderables, width):
        for column in table.columns:
            for cell in [column.header, *column.cells]:
                plain = cell.plain if isinstance(cell, Text) else str(cell)
                expected.update(w for w in plain.split() if column.overflow != "fold" or len(w) <= column.width)
    broken = {word: (n, rendered[word]) for word, n in expected.items() if rendered[word] < n}
    assert not broken, f"split at {width} columns (word: expected, found): {broken}\n{text}"
    return text


@pytest.fixture
def ledger_runs(tmp_path):
    """A sweep with seeds, a smoke run on CPU, a segmenter, an fp16 run that failed with a long error."""
    runs = Runs(tmp_path / "runs")
    for seed, bbox in ((0, 0.424), (1, 0.428)):
        runs.add(curve=det(bbox, 0.393), overrides=["optimizer.lr=2e-4", f"seed={seed}"], seed=seed, sweep="lr")
    runs.add(curve=det(0.410, 0.380), overrides=["optimizer.lr=5e-5"], sweep="lr")
    runs.add(smoke=True, gpus=0, elapsed_s=61.0)
    runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_iter", curve={"mIoU": [40.0, 44.6]})
    # the longest name of the zoo
    runs.add(recipe="mask2former-swin-l-in22k-384-lsj-100e-coco-panoptic", curve=det(0.52, 0.48))
    failed = runs.add(recipe="maskrcnn-swin-t-fp16", curve=det(0.421, 0.389), state="FAILED")
    runs.ledger.update(failed.id, error="CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total "
                       "capacity; /scratch/user/runs/maskrcnn-swin-t-fp16-20240101-000006-0006/work_dir)")
    return runs


@pytest.mark.parametrize("width", WIDTHS)
def test_report_tables_read_whole(ledger_runs, width):
    rep = report.build_report(ledger_runs.root)
    text = assert_reads_whole(report.rich_tables(rep), width)
    for row in rep.runs:  # short ids, unique, in place of the 42-character ones
        assert row.short_id == row.id.rsplit("-", 1)[1] and row.short_id in text.split()
        assert row.id not in text
    runs_table = next(t for t in shown_tables(report.rich_tables(rep), width)
                      if t.title.startswith("runs of maskrcnn-swin-t "))
    headers = [c.header for c in runs_table.columns]
    assert headers[:1] == ["run"] and {"metric", "last", "Δ", "verdict"} <= set(headers)
    assert "notes" not in headers  # empty for every maskrcnn-swin-t run
    if width == 80:
        assert "not shown at 80 columns:" in text and "--wide" in text


def test_report_wide_shows_full_ids_and_every_column(ledger_runs):
    rep = report.build_report(ledger_runs.root)
    text = render(report.rich_tables(rep, wide=True), 300)
    assert all(row.id in text for row in rep.runs) and "not shown" not in text
    tables = shown_tables(report.rich_tables(rep, wide=True), 300)
    fp16 = next(t for t in tables if "fp16" in str(t.title))
    assert [c.header for c in fp16.columns] == ["run", "state", "metric", "last", "best", "Δ", "verdict", "cost",
                                                "per GPU-h", "notes"]


def test_empty_columns_are_dropped(tmp_path):
    runs = Runs(tmp_path / "runs")
    runs.add(curve=det(0.426, 0.395))
    (table,) = shown_tables(report.rich_tables(report.build_report(runs.root)), 120)
    assert [c.header for c in table.columns] == ["run", "state", "metric", "last", "best", "Δ", "verdict", "cost",
                                                "per GPU-h"]  # no overrides, no notes


def status_rows(root):
    return status.collect(Ledger(root), [], everything=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_status_reads_whole(ledger_runs, width):
    running = ledger_runs.add(state="RUNNING", elapsed_s=600.0)
    ledger_runs.ledger.update(running.id, executor="local", job_id=str(os.getpid()), requeues=2)  # alive: us
    rows = status_rows(ledger_runs.root)
    text = assert_reads_whole([views.status_table(rows)], width)
    for row in rows:
        assert row.short_id in text.split() and row.record.id not in text
    assert "COMPLETED" in text and "FAILED" in text and "requeued" in text


def test_short_ids_are_unique_tails():
    ids = ["maskrcnn-swin-t-20240101-120000-ab12", "upernet-swin-t-20240102-080000-ab12",
           "upernet-swin-t-20240102-080000-cd34", "upernet-swin-t-smoke-20240103-080000-ef56", "import:foo"]
    assert select.short_ids(ids) == {
        ids[0]: "120000-ab12", ids[1]: "080000-ab12", ids[2]: "cd34", ids[3]: "ef56", "import:foo": "import:foo"}
    same_time = ["a-20240101-120000-ab12", "b-20240102-120000-ab12"]
    assert select.short_ids(same_time) == {same_time[0]: "20240101-120000-ab12", same_time[1]: "20240102-120000-ab12"}
    twins = ["a-20240101-120000-ab12", "b-20240101-120000-ab12"]  # nothing shorter than the id tells them apart
    assert select.short_ids(twins) == {twins[0]: twins[0], twins[1]: twins[1]}


def test_status_json_and_wide_keep_full_ids(ledger_runs):
    rows = status_rows(ledger_runs.root)
    assert all(row.to_json()["id"] == row.record.id and row.to_json()["short_id"] == row.short_id for row in rows)
    assert all(row.record.id in render([views.status_table(rows, wide=True)], 250) for row in rows)


def test_fit_table_folds_free_text_before_anything_else():
    table = views.FitTable(views.Col("run"), views.Col("state"), views.Col("note", wrap=True, fold=True),
                           title="runs")
    table.add_row("ab12", "COMPLETED", "see /a/very/long/path/that/has/no/spaces/at/all/anywhere/in/it.log")
    text = render([table], 40)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 40
    assert "ab12" in text and "COMPLETED" in text and "state" in text  # whole; only the path folds
    assert "/a/very/long/path/that/has/no/spaces/at/all/anywhere/in/it.log" not in text


def test_fit_table_leaves_out_optional_columns_and_says_so():
    table = views.FitTable(views.Col("run"), views.Col("a-long-header-one", optional=1),
                           views.Col("a-long-header-two", optional=2), title="t")
    table.add_row("ab12", "x", "y")
    text = render([table], 30)
    assert "a-long-header-one" in text and "a-long-header-two" not in text.split("not shown")[0]
    assert "not shown at 30 columns: a-long-header-two" in " ".join(text.split())
    wide = views.FitTable(*table.specs, title="t", wide=True)
    wide.add_row("ab12", "x", "y")
    assert "not shown" not in render([wide], 30)


# ---------------------------------------------------------------------------------------------- the real CLI


def cli(*args, width: int, root) -> str:
    env = dict(os.environ, COLUMNS=str(width), LINES="50", TERM="dumb", NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([sys.executable, "-m", "swinctl.cli", *args, "--runs-root", str(root)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_cli_status_all_and_report_fit(ledger_runs, width):
    records = Ledger(ledger_runs.root).list_runs()
    shorts = select.short_ids(r.id for r in records)
    for verb in (["status", "--all"], ["report"]):
        out = cli(*verb, width=width, root=ledger_runs.root)
        lines = out.splitlines()
        assert max(cell_len(line.rstrip()) for line in lines) <= width, out
        words = out.split()
        assert all(shorts[r.id] in words for r in records), out  # each run id on one line, whole
        assert all(r.id not in out for r in records)
        expected = ("COMPLETED", "FAILED", "progress", "metrics") if verb[0] == "status" else (
            "reproduced", "incomplete", "metric", "verdict", "bbox_mAP", "segm_mAP", "mIoU")
        for word in expected:
            assert word in words, (word, out)


def test_one_set_of_run_state_names():
    """The report judges, and the CLI colours, the ledger's states (plus the report's IMPORTED), no others."""
    from swinctl.report import model
    from swinctl.runs.ledger import ACTIVE_STATES, FINAL_STATES

    assert set(views.STATE_STYLES) == {*ACTIVE_STATES, *FINAL_STATES, model.IMPORTED}
    assert model.ACTIVE == ACTIVE_STATES and set(model.ENDED_EARLY) == set(FINAL_STATES) - {"COMPLETED"}
    assert set(model.VERDICTS) == set(model.Verdict.__args__)


@pytest.mark.parametrize("width", WIDTHS)
def test_sweep_table_reads_whole(ledger_runs, width):
    from swinctl import sweep

    ledger = Ledger(ledger_runs.root)
    records = [r for r in ledger.list_runs() if r.sweep == "lr"]
    rows = [sweep.SweepRow(i, r.overrides, "sig", status.row(ledger, r), False) for i, r in enumerate(records)]
    rows.append(sweep.SweepRow(len(rows), ["optimizer.lr=1e-3"], "sig", None, False))
    shorts = select.short_ids(r.id for r in ledger.list_runs())
    text = assert_reads_whole([sweep.sweep_table(rows, title="lr", short_ids=shorts)], width)
    assert all(shorts[r.id] in text.split() and r.id not in text for r in records)
    assert "NOT CREATED" in text and "★" in text
    assert all(r.id in render([sweep.sweep_table(rows, title="lr")], 250) for r in records)  # no short ids: full


# ---------------------------------------------------------------------------------------------- --wide


def wide_tables(root) -> dict[str, list]:
    """What `status --all --wide`, `report --wide` and `recipes --wide` print, built in-process."""
    from swinctl import recipes

    return {"status": [views.status_table(status_rows(root), wide=True)],
            "report": [t for t in report.rich_tables(report.build_report(root), wide=True) if isinstance(t, Table)],
            "recipes": [views.recipe_table(recipes.listing(None, None, None), wide=True)]}


def assert_wide(tables, text: str, width: int) -> None:
    """Every column of every table shows (its headers in order on one line), and every line of every cell is
    on one output line, whole: nothing left out, wrapped, folded or cut, whatever `width` the terminal has."""
    import re

    lines = text.splitlines()
    assert "not shown" not in text and "…" not in text, text
    for table in tables:
        shown = table._fitted(width)
        headers = [c.header for c in shown.columns]
        assert len(headers) == sum(1 for i, spec in enumerate(table.specs) if not spec.drop_empty
                                   or any(views._plain(c).strip() not in views.EMPTY for c in table.columns[i].cells))
        pattern = re.compile(r"\s+".join(re.escape(h) for h in headers))
        assert any(pattern.search(line) for line in lines), (headers, text)
        for column in table.columns:
            for cell in column.cells:
                for part in views._lines(cell):
                    assert any(part.strip() in line for line in lines), (part, text)
    if width == 80:  # each of these tables is wider than 80 columns: printed wider, not squeezed into them
        assert max(cell_len(line.rstrip()) for line in lines) > width, text


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
@pytest.mark.parametrize("width", (80, 200))
def test_wide_tables_show_every_column_whole_at_any_width(ledger_runs, width, terminal):
    for verb, tables in wide_tables(ledger_runs.root).items():
        buf = io.StringIO()
        console = Console(file=buf, width=width, color_system=None, force_terminal=terminal, legacy_windows=False)
        console.print(*tables, crop=False)
        assert_wide(tables, buf.getvalue(), width)
        assert all(row.record.id in buf.getvalue() for row in status_rows(ledger_runs.root)) or verb == "recipes"


def cli_tty(*args, width: int, argv: tuple = ("-m", "swinctl.cli"), cwd=None) -> str:
    """The real CLI on a pseudo-terminal `width` columns wide (not piped), its output without escape codes."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, *argv, *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0, b"".join(chunks)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", text)


def cli_piped(*args, width: int, cwd=None, argv: tuple = ("-m", "swinctl.cli")) -> str:
    """The real CLI with its stdout a pipe (COLUMNS set, as a shell passes it)."""
    env = dict(os.environ, COLUMNS=str(width), LINES="50", TERM="dumb", NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([sys.executable, *argv, *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("piped", [True, False], ids=["piped", "terminal"])
@pytest.mark.parametrize("width", (80, 200))
def test_cli_wide_shows_every_column_whole(ledger_runs, width, piped):
    """`status --all --wide`, `report --wide` and `recipes --wide` through a pipe and on a terminal: every column
    (what the footer promises), each cell on one line, full run ids."""
    expected = wide_tables(ledger_runs.root)
    root = ["--runs-root", str(ledger_runs.root)]
    verbs = {"status": ["status", "--all", "--wide", *root], "report": ["report", "--wide", *root],
             "recipes": ["recipes", "--wide"]}
    for verb, args in verbs.items():
        out = cli_piped(*args, width=width) if piped else cli_tty(*args, width=width)
        assert_wide(expected[verb], out, width)
        if verb != "recipes":
            assert all(r.id in out for r in Ledger(ledger_runs.root).list_runs()), out


def test_recipes_read_whole_at_80_columns_without_wide():
    from swinctl import recipes

    table = views.recipe_table(recipes.listing(None, None, None))
    text = assert_reads_whole([table], 80)
    assert "not shown at 80 columns: description" in " ".join(text.split()) and "--wide" in text


@pytest.mark.parametrize("piped", [True, False], ids=["piped", "terminal"])
def test_run_wait_summary_keeps_the_run_dir_whole(tmp_path, piped):
    """What `run --wait` prints when the run ends (cli.run._follow): its id and run dir can be copied at 80 columns."""
    from test_report import Runs

    runs = Runs(tmp_path / "a-long-runs-root-on-a-shared-filesystem" / "project-with-a-long-name" / "runs")
    record = runs.add(smoke=True, gpus=0, elapsed_s=61.0)
    follow = ("-c", "import sys; from pathlib import Path; from swinctl.cli.run import _follow; "
              "from swinctl.runs.ledger import Ledger; _follow(sys.argv[1], Ledger(Path(sys.argv[2])))")
    args = (record.id, str(runs.root))
    if piped:
        env = dict(os.environ, COLUMNS="80", TERM="dumb", NO_COLOR="1")
        out = subprocess.run([sys.executable, *follow, *args], env=env, capture_output=True, text=True,
                             timeout=120).stdout
    else:
        out = cli_tty(*args, width=80, argv=follow)
    assert len(str(record.run_dir)) > 80
    assert f"run dir  {record.run_dir}" in out.splitlines(), out
    assert f"{record.id} (smoke)" in out.splitlines(), out
    assert "COMPLETED" in out and "…" not in out


@pytest.mark.parametrize("piped", [True, False], ids=["piped", "terminal"])
def test_nothing_to_show_says_how_to_start_and_creates_nothing(tmp_path, piped, monkeypatch):
    """`status` and `report` where no run was ever made: one line that says where they looked and how to start,
    whole at 80 columns; `status --json` is an empty list. None of them creates a runs root or a ledger."""
    monkeypatch.delenv("SWINCTL_RUNS", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                   os.environ.get("PYTHONPATH")])))
    hint = "no runs under ./runs yet: start one with `swinctl run maskrcnn-swin-t --smoke --wait`"
    for args in (["status"], ["status", "--all"], ["report"]):
        out = cli_piped(*args, width=80, cwd=tmp_path) if piped else cli_tty(*args, width=80, cwd=tmp_path)
        assert out.strip() == hint, out
    assert cli_piped("status", "--json", width=80, cwd=tmp_path).strip() == "[]"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("piped", [True, False], ids=["piped", "terminal"])
def test_status_shows_each_tasks_headline_metric(tmp_path, piped):
    """A panoptic run logs box and mask mAP too: status shows its PQ (the number it is judged by); an instance
    segmenter its box and mask mAP; a semantic segmenter its mIoU. The real CLI, at 80 columns."""
    runs = Runs(tmp_path / "runs")
    panoptic = runs.add(recipe="mask2former-swin-t-lsj-50e-coco-panoptic", fixture="mmengine/panoptic_iter")
    instance = runs.add(curve=det(0.424, 0.393))
    semantic = runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_iter")
    args = ("status", "--all", "--wide", "--runs-root", str(runs.root))
    out = cli_piped(*args, width=80) if piped else cli_tty(*args, width=80)
    rows = {}
    for line in out.splitlines():  # --wide: each run's row starts with its full id; the metrics cell folds below
        run_id = next((r.id for r in (panoptic, instance, semantic) if r.id in line), None)
        if run_id:
            current = rows.setdefault(run_id, [])
        if rows and not set(line) <= {" ", "─", "━"}:
            current.append(line)
    words = {run_id: " ".join(lines).split() for run_id, lines in rows.items()}
    assert "PQ" in words[panoptic.id] and not {"bbox_mAP", "segm_mAP"} & set(words[panoptic.id]), out
    assert {"bbox_mAP", "segm_mAP"} <= set(words[instance.id]) and "PQ" not in words[instance.id], out
    assert "mIoU" in words[semantic.id] and not {"bbox_mAP", "PQ"} & set(words[semantic.id]), out


def test_one_table_of_headline_metrics():
    """Every task a recipe can have has its headline metrics, each with words; the expected metrics a recipe may
    name are those."""
    import typing

    from swinctl import recipes, results

    tasks = set(typing.get_args(recipes.Task))
    assert set(results.HEADLINE) == tasks
    assert set(typing.get_args(recipes.Expected.model_fields["metric"].annotation)) == set(results.HEADLINE_METRICS)
    assert all(m in results.METRIC_WORDS and m in results.CANONICAL_METRICS for m in results.HEADLINE_METRICS)
    assert results.task_metrics({"PQ", "bbox_mAP", "segm_mAP"}) == ("PQ",)
    assert [results.metric_word(m, short=True) for m in ("bbox_mAP", "segm_mAP", "PQ")] == ["box", "mask", "PQ"]
