"""Runs one composed config: checks every component name, seeds, logs, dispatches the algorithm."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from omegaconf import DictConfig, OmegaConf

from framework.atomic import atomic_write_bytes
from framework.errors import UserInputError
from framework.interfaces import Algorithm, RunContext
from framework.metrics import RunLogger
from framework.phases import CHECKPOINT
from framework.plugins import load_plugins
from framework.registry import KINDS, ComponentRegistry, RegistryError
from framework.seeding import seed_everything
from framework.typed_config import typed_settings

#: The resolved config a run saves in its folder (and a resumed run reads back).
RUN_CONFIG = "config.yaml"


def check_component_names(cfg: DictConfig, registry: ComponentRegistry) -> None:
    """Fail before anything is written if a config names a component no plugin registered."""
    if cfg.get("algo") is None:
        raise RegistryError(
            "no algorithm chosen: add +algo=NAME; valid names: " + ", ".join(registry.names("algo"))
        )
    for kind in KINDS:
        section = cfg.get(kind)
        if isinstance(section, DictConfig) and "name" in section:
            registry.get(kind, section.name)


def build_algorithm(cfg: DictConfig, run_dir: Path, logger: RunLogger) -> Algorithm:
    """The algorithm ``cfg.algo`` names, built (not run) with its :class:`RunContext`."""
    registry = load_plugins().registry
    context = RunContext(
        cfg=cfg,
        run_dir=run_dir,
        registry=registry,
        logger=logger,
        device=torch.device(cfg.device),
        seed=cfg.seed,
    )
    return registry.get("algo", cfg.algo.name)(context)


def load_trained(run_dir: Path) -> Algorithm:
    """The algorithm of the run in ``run_dir``, built from its saved config and holding its
    checkpoint's weights, for analysis (it writes nothing: its own run folder is a scratch one,
    removed on return)."""
    if not (run_dir / RUN_CONFIG).is_file() or not (run_dir / CHECKPOINT).is_file():
        raise UserInputError(f"{run_dir}: not a run folder with {RUN_CONFIG} and {CHECKPOINT}")
    cfg = OmegaConf.load(run_dir / RUN_CONFIG)
    cfg.init, cfg.resume, cfg.phase = None, None, "offline"  # build only; weights from run_dir
    with TemporaryDirectory() as scratch:
        algorithm = build_algorithm(cfg, Path(scratch), RunLogger(Path(scratch), False))
        algorithm.load(str(run_dir))
    return algorithm


@dataclass(frozen=True)
class RunSettings:
    """The top-level keys of ``configs/config.yaml``, type-checked before a run starts."""

    seed: int
    phase: str
    init: str | None
    resume: str | None
    device: str
    progress: bool
    tensorboard: bool
    threads: int | None = None  # absent from the configs of runs saved before it existed


def cpu_threads(requested: int | None, environ: Mapping[str, str]) -> int:
    """torch's CPU threads for a run: ``threads=N``; with ``threads=null``, ``$OMP_NUM_THREADS``
    (which the Slurm and joblib launchers set), else 1.

    One by default rather than torch's one per core. A run with a thread on every core stalls
    whenever another process takes one (libgomp's idle threads spin at each parallel region's
    barrier): `+algo=moto +experiment=small` beside one other run took about 20 s per update
    instead of 0.2. One thread costs 5-33% of the speed on an idle 2-core machine, and a
    run's numbers then do not depend on the machine's core count (benchmarks/cpu_contention.py,
    docs/scale_out.md).
    """
    if requested is not None:
        if requested < 1:
            raise UserInputError(f"threads={requested}: give 1 or more, or null")
        return requested
    value = environ.get("OMP_NUM_THREADS", "1").split(",")[0]
    if not value.isdigit() or int(value) < 1:
        raise UserInputError(
            f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS']!r} is not a number of threads: "
            "unset it, or pass threads=N"
        )
    return int(value)


def check_run_settings(cfg: DictConfig, environ: Mapping[str, str]) -> RunSettings:
    """The top-level settings, typed, with ``threads`` resolved (:func:`cpu_threads`); a clear
    error for a wrong type, an unusable device or thread count."""
    settings = typed_settings(RunSettings, cfg, "")
    settings = replace(settings, threads=cpu_threads(settings.threads, environ))
    try:
        device = torch.device(settings.device)
    except RuntimeError as error:
        raise UserInputError(f"device={settings.device!r}: {error}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device={settings.device} but torch sees no GPU here: use device=cpu")
    return settings


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Train ``cfg.algo`` with outputs in ``run_dir``; returns the algorithm's final results.

    ``run_dir`` is a new folder, or with ``cfg.resume`` set the run folder being continued.
    The checks that bad input can fail (names, types, an existing run in ``run_dir``, the
    algorithm's own checks when it is built) run before anything is written there.
    """
    registry = load_plugins().registry
    check_component_names(cfg, registry)
    settings = check_run_settings(cfg, os.environ)
    resuming = settings.resume is not None
    if resuming and not registry.get("algo", cfg.algo.name).resumable:
        raise UserInputError(
            f"algo {cfg.algo.name!r} cannot resume a run (no phase checkpoints); start it again"
        )
    if not resuming and (run_dir / RUN_CONFIG).exists():
        raise UserInputError(
            f"{run_dir} already holds a run: continue it with `framework run resume={run_dir}`, "
            "or choose another hydra.run.dir"
        )
    torch.set_num_threads(settings.threads)
    seed_everything(cfg.seed)
    # NaNs must reach the losses, where the phase runner's guard names the loss and the
    # update; torch's distribution argument checks would raise from deep inside a forward pass.
    torch.distributions.Distribution.set_default_validate_args(False)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard)
    try:
        algorithm = build_algorithm(cfg, run_dir, logger)
        run_dir.mkdir(parents=True, exist_ok=True)
        # What the run runs with, for a later resume= (a resumed run's raised budget included).
        saved = OmegaConf.to_yaml(OmegaConf.merge(cfg, {"resume": None}), resolve=True)
        atomic_write_bytes(run_dir / RUN_CONFIG, saved.encode())
        results = algorithm.run()
    finally:
        logger.close()
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def resume_config(run_dir: Path, online_episodes: int | None = None) -> DictConfig:
    """The saved config of the run in ``run_dir``, set to resume it; a clear error when the
    folder holds no run or no checkpoint yet. ``online_episodes`` raises the run's online
    budget (``algo.online.episodes``), so that a finished run goes on fine-tuning up to it
    (:func:`run_experiment` saves it, once the run's checks pass, for later resumes)."""
    if not (run_dir / RUN_CONFIG).is_file():
        raise UserInputError(
            f"resume={run_dir}: not a run folder (no {RUN_CONFIG}); pass the folder a "
            "`framework run` wrote (runs/<algo>/<time>/ or a sweep's job folder)"
        )
    if not (run_dir / CHECKPOINT).is_file():
        raise UserInputError(
            f"resume={run_dir}: the run stopped before its first checkpoint ({CHECKPOINT}); "
            "start it again instead"
        )
    cfg = OmegaConf.load(run_dir / RUN_CONFIG)
    if online_episodes is not None:
        _raise_online_budget(cfg, online_episodes, run_dir)
    cfg.resume = str(run_dir)
    return cfg


def _raise_online_budget(cfg: DictConfig, episodes: int, run_dir: Path) -> None:
    """Set ``cfg.algo.online.episodes`` to ``episodes``; a clear error for a run without an
    online phase or for a budget below the saved one."""
    planned = OmegaConf.select(cfg, "algo.online.episodes")
    if planned is None or cfg.get("phase") == "offline":
        raise UserInputError(
            f"resume={run_dir}: this run has no online phase whose episodes could be raised; "
            "drop algo.online.episodes"
        )
    if episodes < planned:
        raise UserInputError(
            f"resume={run_dir}: algo.online.episodes={episodes} is below the run's {planned}; "
            "a resumed run can only raise its online budget"
        )
    cfg.algo.online.episodes = episodes
