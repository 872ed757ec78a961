"""The run's transition model, for learners that fit ``(s, a) → (s', r)`` (PETS, MBPO)."""

from __future__ import annotations

from framework.errors import UserInputError
from framework.interfaces import RunContext, TransitionEnsemble


def build_transition_ensemble(
    context: RunContext, obs_dim: int, action_dim: int, learns_reward: bool, learner: str
) -> TransitionEnsemble:
    """The ``dynamics`` component the run's config names, built for flat states of
    ``obs_dim`` and actions of ``action_dim``; a clear error naming ``learner`` when that
    component is not a :class:`TransitionEnsemble` (e.g. the latent ensemble)."""
    cfg = context.cfg
    model = context.registry.build(
        "dynamics",
        cfg.dynamics,
        obs_dim=obs_dim,
        action_dim=action_dim,
        learns_reward=learns_reward,
        device=str(context.device),
        seed=context.seed,
    )
    if not isinstance(model, TransitionEnsemble):
        raise UserInputError(
            f"{learner} fits its model on transitions: dynamics {cfg.dynamics.name!r} is a "
            f"{type(model).__name__}, not a TransitionEnsemble"
        )
    return model
