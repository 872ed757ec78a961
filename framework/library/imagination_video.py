"""What a world model imagines, next to what happened: decoded open-loop predictions of an
episode's frames from its first few observations and its actions."""

from __future__ import annotations

import numpy as np
import torch

from framework.library.rssm import LatentState, WorldModel


@torch.no_grad()
def open_loop_frames(
    world_model: WorldModel, pixels: np.ndarray, actions: np.ndarray, context: int = 5
) -> np.ndarray:
    """Real frames beside imagined ones, ``(T+1, 3, H, 2W)`` uint8.

    ``pixels`` ``(T+1, 3, H, W)`` uint8 and ``actions`` ``(T, A)`` are one episode in the
    dataset layout. The model filters the first ``context`` frames (their decoded posteriors
    fill the right half there), then predicts the rest from the actions alone, each step's
    latent the mean over the ensemble's heads.
    """
    device = next(world_model.parameters()).device
    obs = torch.as_tensor(pixels, device=device)
    steps = len(actions)
    row_actions = torch.zeros(1, steps + 1, actions.shape[1], device=device)
    row_actions[0, 1:] = torch.as_tensor(actions, dtype=torch.float32, device=device)
    context = max(1, min(context, steps + 1))
    is_first = torch.zeros(1, context, dtype=torch.bool, device=device)
    is_first[0, 0] = True
    embeds = world_model.embed(obs[:context]).unsqueeze(0)
    observed = world_model.rssm.observe(embeds, row_actions[:, :context], is_first)
    features = [observed.posterior.features[0]]
    state = LatentState(observed.posterior.deter[:, -1], observed.posterior.stoch[:, -1])
    for t in range(context, steps + 1):
        state, _ = world_model.rssm.prior_step(state, row_actions[:, t])
        features.append(state.features)
    decoded = world_model.decoder(torch.cat(features, dim=0))
    imagined = ((decoded + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return np.concatenate([np.asarray(pixels), imagined], axis=-1)
