"""`recipes`, `show`, `data demo`, `doctor`, `convert-checkpoint`: what needs no run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from swinctl.cli.app import (
    Guard,
    NoScaleLr,
    SetOpt,
    app,
    console,
    data_app,
    fail,
    print_data,
    resource_overrides,
)


@app.command("recipes")
def list_recipes(
    text: Annotated[str | None, typer.Argument(metavar="TEXT", help="Only recipes whose name, reference config or "
                                               "description contain this (e.g. mask2former, cityscapes, swin-l).")]
    = None,
    codebase: Annotated[Literal["mmdet", "mmseg"] | None, typer.Option(
        help="Only this codebase's recipes.")] = None,
    task: Annotated[Literal["detection", "instance", "panoptic", "semantic"] | None, typer.Option(
        help="Only recipes of this task.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every field of every recipe listed, as JSON.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide.")] = False,
) -> None:
    """List the recipes swinctl knows: the seed recipes and the Swin zoo of MMDetection and MMSegmentation."""
    with Guard():
        from swinctl import recipes, views

        rows = recipes.listing(codebase, task, text)
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            console.print(views.recipe_table(rows, wide=wide), crop=False)


@app.command()
def show(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path.")],
    config: Annotated[bool, typer.Option("--config", help="Print the rendered MMEngine config too.")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="Show the smoke variant.")] = False,
    set_: SetOpt = None,
) -> None:
    """Print the resolved recipe (and, with --config, the rendered MMEngine config)."""
    with Guard():

        from swinctl import recipes
        from swinctl.runs import lifecycle as runs

        resolved, config_overrides = runs.resolve_recipe(recipe, list(set_ or []), smoke)
        if config_overrides and not config:
            keys = ", ".join(key for key, _ in config_overrides)
            fail(f"{keys}: not a recipe field; add --config to check it against the rendered config")
        print_data(recipes.dump_recipe(resolved), "yaml")
        if config:
            from swinctl import render

            text = render.to_text(render.render(resolved, config_overrides=config_overrides))
            console.rule("rendered config")
            print_data(text, "python")


@data_app.command("demo")
def data_demo(
    kind: Annotated[Literal["coco", "ade20k", "cityscapes", "all"], typer.Argument(
        metavar="KIND", help="coco holds instances and panoptic.")] = "all",
    root: Annotated[Path | None, typer.Option(help="Where to put it.",
                                                 show_default="$SWINCTL_DATA or ~/.cache/swinctl/data")] = None,
) -> None:
    """Generate (once; cached) the small demo datasets smoke runs use."""
    with Guard():
        from swinctl.data import demo

        kinds = ["coco", "ade20k"] if kind == "all" else [kind]
        for name in kinds:
            console.print(f"[green]{name}[/] demo set: {demo.ensure(name, root)}")


@app.command()
def doctor(
    recipe: Annotated[str | None, typer.Argument(help="Also check this recipe's run against its published setting: "
                                                 "batch and LR, pretrained weights, dataset splits, reference log.",
                                                 show_default=False)] = None,
    set_: SetOpt = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs in total (with RECIPE).")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="GPUs per node (with RECIPE).")] = None,
    nodes: Annotated[int | None, typer.Option(help="Nodes (with RECIPE).")] = None,
    no_scale_lr: NoScaleLr = False,
) -> None:
    """Report versions, compiled mmcv ops, GPUs, SLURM and the W&B mode; with RECIPE, whether its run can reproduce
    the published number."""
    from swinctl import doctor as checks

    if recipe is None:
        console.print(checks.table(checks.run_checks()))
        return
    with Guard():
        from swinctl.guard import show

        overrides = list(set_ or []) + resource_overrides(gpus, gpus_per_node, nodes, None, None)
        found, reference = checks.recipe_checks(recipe, overrides, scale_lr=not no_scale_lr)
        console.print(show.deviations(found, title=f"of {recipe} against the published setting"))
        if reference:
            console.print(reference, highlight=False)


@app.command("convert-checkpoint")
def convert_checkpoint(
    src: Annotated[Path, typer.Argument(help="Checkpoint to read (any supported Swin layout).")],
    dst: Annotated[Path, typer.Argument(help="Where to write the converted checkpoint.")],
    to: Annotated[Literal["swinctl", "mmdet"], typer.Option("--to", help="Target layout: swinctl (official) or "
                                                            "mmdet (MMDet 3.x / MMSeg 1.x).")] = "swinctl",
    window_size: Annotated[int | None, typer.Option("--window-size", min=1, help="Resample the relative position "
                                                    "bias tables to this window (7 -> 12 for window-12 models).",
                                                    show_default="the checkpoint's")] = None,
    shape: Annotated[Literal["keep", "model", "backbone"], typer.Option(
        "--shape", help="keep: backbone weights stay backbone weights, a full detector/segmentor stays one; model: "
        "write backbone.* keys (a full model's layout) even from backbone weights; backbone: drop the rest.")]
    = "keep",
) -> None:
    """Convert a Swin checkpoint between layouts (official, MMDet/MMSeg, timm, full detector/segmentor)."""
    with Guard():
        if not src.is_file():
            fail(f"checkpoint not found: {src}")
        from swinctl.models.checkpoints import convert_checkpoint_file

        report = convert_checkpoint_file(src, dst, to=to, window_size=window_size, shape=shape)
        console.print(report.summary())
        console.print(f"[green]wrote[/] {dst}")
