"""What the three training commands (train-classifier, train-gan, predict-frames) share: the
options after their own, and the lines after their config is resolved.

    @opt.handle_errors
    @trainer_command()
    def train_gan(*, dataset: ..., steps: ..., common: TrainerArgs) -> None:
        cfg = resolve_config(GanConfig, config_file=common.config, set_items=common.set_, ...)
        train_or_print(cfg, common, command="train-gan", workdir_parts=(cfg.dataset,),
                       train=lambda: importlib.import_module("realsys_cli.gan.train"))

One list of options means one spelling and one help text for each, and a new shared option
reaches every trainer at once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from realsys_cli.cli import options as opt


@dataclasses.dataclass(frozen=True)
class TrainerArgs:
    """The shared options' values, as one argument of the command's function."""

    seed: int | None
    data_dir: Path | None
    tfds_data_dir: Path | None
    no_download: bool
    config: str | None
    set_: list[str] | None
    print_config: bool
    workdir: Path | None
    coordinator_address: str | None
    num_processes: int
    process_id: int
    json: bool


def _shared(*, data_dir: bool) -> list[inspect.Parameter]:
    """The shared options in the order --help lists them, after the command's own."""
    specs = [("seed", opt.SeedOpt, None), ("data_dir", opt.DataDirOpt, None),
             ("tfds_data_dir", opt.TfdsDirOpt, None), ("no_download", opt.NoDownloadOpt, False),
             ("config", opt.ConfigOpt, None), ("set_", opt.SetOpt, None),
             ("print_config", opt.PrintConfigOpt, False), ("workdir", opt.WorkdirOpt, None),
             ("coordinator_address", opt.CoordinatorOpt, None),
             ("num_processes", opt.NumProcessesOpt, 1), ("process_id", opt.ProcessIdOpt, 0),
             ("json", opt.JsonOpt, False)]
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                              annotation=annotation)
            for name, annotation, default in specs if data_dir or name != "data_dir"]


def trainer_command(*, data_dir: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared trainer options; its function takes them as `common`.
    `data_dir=False`: a trainer with no reader for image folders (predict-frames)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
               if p.name != "common"]
        shared = _shared(data_dir=data_dir)
        names = [p.name for p in shared]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            values.setdefault("data_dir", None)
            return fn(common=TrainerArgs(**values), **kwargs)

        # Typer reads the options from the signature: the command's own, then the shared.
        command.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in [*own, *shared]}
        return command

    return decorate


def train_or_print(cfg: Any, common: TrainerArgs, *, command: str,
                   workdir_parts: tuple[str, ...],
                   train: Callable[[], Callable[..., dict[str, Any]]]) -> None:
    """`--print-config`: print the resolved config, train nothing. Otherwise check that the
    workdir can be made, then train (`train()` imports and returns the trainer: jax is
    imported only now) and print the result; a run that fails before saving anything leaves
    no workdir behind."""
    from realsys_cli import console, outputs

    if common.print_config:
        from realsys_cli.cli.printing import print_config

        print_config(cfg, command=command, json_mode=common.json)
        return
    workdir = common.workdir or opt.default_workdir(command, *workdir_parts)
    outputs.check_creatable(workdir, option="--workdir", folder=True)
    with console.held_back():  # not before a bad input's error (a --judge, the data)
        console.note(f"workdir: {workdir}")
    with outputs.discard_if_nothing_saved(workdir):
        opt.run_trainer(train(), cfg, workdir, coordinator_address=common.coordinator_address,
                        num_processes=common.num_processes, process_id=common.process_id,
                        json=common.json, title=command)
