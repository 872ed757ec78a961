"""Runs one composed config: checks every component name, seeds, logs, dispatches the algorithm."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from framework.interfaces import Algorithm, RunContext
from framework.metrics import RunLogger
from framework.plugins import load_plugins
from framework.registry import KINDS, ComponentRegistry, RegistryError
from framework.seeding import seed_everything


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


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Train ``cfg.algo`` with outputs in ``run_dir``; returns the algorithm's final results."""
    registry = load_plugins().registry
    check_component_names(cfg, registry)
    seed_everything(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard)
    try:
        results = build_algorithm(cfg, run_dir, logger).run()
    finally:
        logger.close()
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
