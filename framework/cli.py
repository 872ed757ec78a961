"""The ``framework`` command: ``framework run +algo=NAME [overrides]`` and ``framework list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from framework.compose import prepare_overrides
from framework.config_groups import PRIMARY_CONFIGS, group_options
from framework.errors import RunStopped, UserInputError
from framework.plugins import load_plugins
from framework.registry import KINDS
from framework.runner import RUN_CONFIG, resume_config, run_experiment

USAGE = """usage: framework run +algo=NAME [GROUP=OPTION ...] [key=value ...] [hydra flags]
       framework run resume=RUN_FOLDER [algo.online.episodes=N]
       framework list
       framework collect --task TASK --episodes N --noise STD --obs state|pixels|both --out DIR

run      train an algorithm; any Hydra override or flag (--cfg job, -m, ...) passes through;
         resume=RUN_FOLDER continues a stopped run from its last checkpoint, and with
         algo.online.episodes=N fine-tunes a run (finished or not) up to N online episodes
list     installed plugins, registered components by kind, config options by group
collect  write an offline dataset from MetaWorld's scripted policy (collect --help for more)
"""

#: The one override ``resume=`` takes: a finished or stopped run's raised online budget.
_RAISE_BUDGET = "algo.online.episodes="
_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--version")


@hydra.main(config_path=PRIMARY_CONFIGS, config_name="config", version_base="1.3")
def _hydra_run(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    code = _run_and_report(cfg, run_dir)
    if code == 2 and run_dir.is_dir() and {path.name for path in run_dir.iterdir()} <= {RUN_CONFIG}:
        # A new run that failed its checks (an existing run is refused before anything is
        # written): remove its folder, which Hydra made, rather than leave a husk.
        (run_dir / RUN_CONFIG).unlink(missing_ok=True)
        run_dir.rmdir()
    if code and HydraConfig.get().mode == RunMode.MULTIRUN:
        # One failed job of a sweep: the launcher records it and the other jobs go on (an
        # exit here would end a joblib sweep, or make Ray retry a "crashed" worker).
        raise RuntimeError(f"run in {run_dir} failed (exit code {code}); see its output above")
    if code:
        sys.exit(code)


def _run_and_report(cfg: DictConfig, run_dir: Path) -> int:
    """Run, print the results or what stopped the run; the exit code."""
    try:
        results = run_experiment(cfg, run_dir)
    except UserInputError as error:
        print(f"framework run: {error}", file=sys.stderr)
        return 2
    except RunStopped as error:
        print(f"framework run: {error}", file=sys.stderr)
        return error.exit_code
    summary = ", ".join(f"{key} {value:g}" for key, value in results.items())
    print(f"{cfg.algo.name}: {summary}\noutputs: {run_dir}")
    return 0


def _resume(args: list[str]) -> int:
    """``framework run resume=<run folder> [algo.online.episodes=N]``: continue that run with
    its saved config, its online budget raised to ``N`` if given."""
    folders = [arg.removeprefix("resume=") for arg in args if arg.startswith("resume=")]
    budgets = [arg.removeprefix(_RAISE_BUDGET) for arg in args if arg.startswith(_RAISE_BUDGET)]
    others = " ".join(
        arg for arg in args if not arg.startswith("resume=") and not arg.startswith(_RAISE_BUDGET)
    )
    problem = None
    if others:
        problem = (
            "resume continues a run with its saved config; the one override it takes is "
            f"{_RAISE_BUDGET}N (a larger online budget): drop {others!r}"
        )
    elif len(folders) != 1 or len(budgets) > 1:
        problem = f"give resume= once, and {_RAISE_BUDGET} at most once"
    elif budgets and not budgets[0].isdigit():
        problem = f"{_RAISE_BUDGET}{budgets[0]}: give a whole number of episodes"
    if problem is not None:
        print(f"framework run: {problem}", file=sys.stderr)
        return 2
    run_dir = Path(folders[0])
    try:
        cfg = resume_config(run_dir, int(budgets[0]) if budgets else None)
    except UserInputError as error:
        print(f"framework run: {error}", file=sys.stderr)
        return 2
    return _run_and_report(cfg, run_dir)


def _run(args: list[str]) -> int:
    if any(arg.startswith("resume=") for arg in args):
        return _resume(args)
    plugins = load_plugins()
    args = prepare_overrides(args, plugins.searchpaths)
    if not any(arg.startswith("algo=") for arg in args) and not any(
        arg.split("=")[0] in _INFO_FLAGS for arg in args
    ):
        algos = group_options(plugins.searchpaths).get("algo", [])
        print(
            "framework run: no algorithm chosen. Add +algo=NAME; valid names: "
            + (", ".join(algos) or "(none installed)"),
            file=sys.stderr,
        )
        return 2
    sys.argv = ["framework run", *args]
    _hydra_run()
    return 0


def _list() -> int:
    plugins = load_plugins()
    print("Plugins (entry-point group 'framework.plugins'):")
    for info in plugins.plugins:
        print(f"  {info.name:<14} {info.distribution} {info.version}")
    print("\nComponents by kind:")
    for kind in KINDS:
        entries = [f"{entry.name} ({entry.plugin})" for entry in plugins.registry.entries(kind)]
        print(f"  {kind + ':':<13} {', '.join(entries) or '(none)'}")
    print("\nConfig options by group (select with GROUP=OPTION):")
    for group, options in group_options(plugins.searchpaths).items():
        print(f"  {group + ':':<13} {', '.join(options)}")
    return 0


def _collect(args: list[str]) -> int:
    # Imported here: it loads MetaWorld and MuJoCo, which `run` and `list` do not need.
    from framework.data.collect import collect
    from framework.library.wrappers import OBS_MODES

    parser = argparse.ArgumentParser(
        prog="framework collect",
        description="Append episodes of MetaWorld's scripted policy, with Gaussian action "
        "noise, to a dataset folder (format: docs/datasets.md).",
    )
    parser.add_argument("--task", required=True, help="MetaWorld task, e.g. door-open-v3")
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--noise", type=float, required=True, help="action noise std")
    parser.add_argument("--obs", choices=OBS_MODES, required=True)
    parser.add_argument("--out", type=Path, required=True, help="dataset folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64, help="pixels per image side")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="episode length (default: the task's, 500)"
    )
    parser.add_argument(
        "--only-successful", action="store_true", help="keep only episodes that succeed"
    )
    options = parser.parse_args(args)
    rate = collect(
        options.task,
        options.episodes,
        options.noise,
        options.obs,
        options.out,
        options.seed,
        options.image_size,
        options.max_steps,
        options.only_successful,
    )
    print(f"{options.task}: scripted success rate {rate:.2f}")
    print(f"dataset: {options.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``framework`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {"run": lambda: _run(rest), "list": _list, "collect": lambda: _collect(rest)}
    if command in commands:
        try:
            return commands[command]()
        except UserInputError as error:  # e.g. two plugins registering one name
            print(f"framework {command}: {error}", file=sys.stderr)
            return 2
    print(f"framework: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
