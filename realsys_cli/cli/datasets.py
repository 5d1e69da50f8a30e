"""`realsys datasets list | prepare | preview`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from realsys_cli.cli import options as opt

app = typer.Typer(help="List, prepare and preview datasets.", no_args_is_help=True)


@app.command("list")
@opt.handle_errors
def list_command(*, tfds_data_dir: opt.TfdsDirOpt = None, json: opt.JsonOpt = False) -> None:
    """Built-in datasets and the datasets prepared in the TFDS data dir."""
    from realsys_cli import console
    from realsys_cli.data.catalog import list_datasets

    rows = list_datasets(tfds_data_dir)
    console.print_rows(rows, json_mode=json, title="datasets", key="datasets")


@app.command("prepare")
@opt.handle_errors
def prepare_command(
    name: Annotated[str, typer.Argument(
        help="digits, shapes/size=224, mnist, fashion_mnist, cifar10, imagenette/320px-v2, ...")],
    *,
    tfds_data_dir: opt.TfdsDirOpt = None,
    no_download: opt.NoDownloadOpt = False,
    json: opt.JsonOpt = False,
) -> None:
    """Generate a built-in dataset, or download, verify and prepare a TFDS one (no TensorFlow).

    Every command that reads a dataset does this by itself on first use; this one does only
    that. REALSYS_DATASETS_MIRROR=URL fetches the files from a mirror instead."""
    from realsys_cli import console
    from realsys_cli.data import catalog, dataset

    dataset.prepare(name, tfds_dir=tfds_data_dir)
    result = catalog.describe(dataset.open_dataset(name, tfds_dir=tfds_data_dir))
    console.print_result(result, json_mode=json, title=f"prepared {name}")


@app.command("preview")
@opt.handle_errors
def preview_command(
    name: Annotated[str, typer.Argument(help="A dataset name (with --data-dir: any label).")],
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG (images) or GIF (video).")],
    split: Annotated[str | None, typer.Option(help="Split (default: train).")] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=400)] = 40,
    seed: opt.SeedOpt = None,
    data_dir: opt.DataDirOpt = None,
    tfds_data_dir: opt.TfdsDirOpt = None,
    no_download: opt.NoDownloadOpt = False,
    json: opt.JsonOpt = False,
) -> None:
    """Save a labelled grid of samples (an animated GIF strip for video datasets)."""
    from realsys_cli import console
    from realsys_cli.data.catalog import preview

    result = preview(
        name, out, split=split, count=count, seed=seed or 0,
        data_dir=opt.path_or_none(data_dir), tfds_dir=tfds_data_dir,
    )
    console.print_result(result, json_mode=json, title="preview")
