"""Registers the core component library, exactly as a third-party plugin would."""

from __future__ import annotations

from framework.library import (
    encoders,
    envs,
    gaussian_ensemble,
    kitchen_env,
    metaworld_env,
    planners,
    point_env,
    rssm,
    uncertainty,
)
from framework.plugins import hookimpl
from framework.registry import ComponentRegistry


@hookimpl
def register_components(registry: ComponentRegistry, plugin: str) -> None:
    for name, factory in {
        "none": uncertainty.NoUncertainty,
        "disagreement": uncertainty.EnsembleDisagreement,
        "total_variance": uncertainty.TotalVariance,
        "max_aleatoric": uncertainty.MaxAleatoricStd,
        "max_pairwise": uncertainty.MaxPairwiseDistance,
    }.items():
        registry.add("uncertainty", name, factory, plugin=plugin)
    registry.add("encoder", "identity", encoders.IdentityEncoder, plugin=plugin)
    registry.add("encoder", "mlp", encoders.MLPEncoder, plugin=plugin)
    registry.add("encoder", "conv", encoders.ConvEncoder, plugin=plugin)
    registry.add("dynamics", "gaussian_mlp", gaussian_ensemble.GaussianMLPEnsemble, plugin=plugin)
    registry.add("dynamics", "latent_ensemble", rssm.LatentEnsembleHeads, plugin=plugin)
    registry.add("planner", "cem", planners.CEMPlanner, plugin=plugin)
    registry.add("planner", "icem", planners.ICEMPlanner, plugin=plugin)
    registry.add("planner", "mppi", planners.MPPIPlanner, plugin=plugin)
    registry.add("env", "gym", envs.GymEnvFactory, plugin=plugin)
    registry.add("env", "mbrl", envs.MbrlEnvFactory, plugin=plugin)
    registry.add("env", "metaworld", metaworld_env.MetaWorldEnvFactory, plugin=plugin)
    registry.add("env", "kitchen", kitchen_env.FrankaKitchenFactory, plugin=plugin)
    registry.add("env", "point", point_env.PointReachFactory, plugin=plugin)
