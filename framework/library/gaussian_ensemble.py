"""A probabilistic transition ensemble on mbrl-lib's ``GaussianMLP`` (PETS-style)."""

from __future__ import annotations

import mbrl.models
import mbrl.util.common
import mbrl.util.replay_buffer
import numpy as np
import torch

from framework.interfaces import EnsemblePrediction, TransitionEnsemble


class GaussianMLPEnsemble(TransitionEnsemble):
    """``ensemble_size`` Gaussian MLPs over ``(state, action)`` predicting the next state (and
    the reward when ``learns_reward``), evaluated as one batched network.

    Built from mbrl-lib: ``GaussianMLP`` (stacked ensemble layers, learned log-variance bounds),
    ``OneDTransitionRewardModel`` (input normalisation, state-delta targets) and ``ModelTrainer``
    (Adam, per-epoch validation, early stopping). Its ``predict`` returns absolute next states.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        learns_reward: bool = True,
        ensemble_size: int = 7,
        hidden_size: int = 200,
        num_layers: int = 4,
        learning_rate: float = 7.5e-4,
        weight_decay: float = 3e-5,
        batch_size: int = 256,
        epochs: int = 25,
        patience: int = 25,
        validation_ratio: float = 0.0,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.learns_reward = learns_reward
        self.ensemble_size = ensemble_size
        self.batch_size, self.epochs, self.patience = batch_size, epochs, patience
        self.validation_ratio = validation_ratio
        # Built directly rather than through mbrl's hydra factories: hydra 1.3 instantiates the
        # nested activation `_target_` eagerly, which those factories do not expect.
        network = mbrl.models.GaussianMLP(
            in_size=obs_dim + action_dim,
            out_size=obs_dim + int(learns_reward),
            device=device,
            num_layers=num_layers,
            ensemble_size=ensemble_size,
            hid_size=hidden_size,
            activation_fn_cfg={"_target_": "torch.nn.SiLU"},
        )
        self.transition_model = mbrl.models.OneDTransitionRewardModel(
            network,
            target_is_delta=True,
            normalize=True,
            normalize_double_precision=True,
            learned_rewards=learns_reward,
        )
        self.trainer = mbrl.models.ModelTrainer(
            self.transition_model, optim_lr=learning_rate, weight_decay=weight_decay
        )
        self._rng = np.random.default_rng(seed)

    def predict(self, state: torch.Tensor, action: torch.Tensor) -> EnsemblePrediction:
        model_in = self.transition_model._get_model_input(state, action)
        mean, logvar = self.transition_model.model.forward(model_in, use_propagation=False)
        if mean.dim() == 2:  # a one-member ensemble drops its member axis
            mean, logvar = mean.unsqueeze(0), logvar.unsqueeze(0)
        next_state = mean[..., : self.obs_dim] + state.to(mean)
        mean = torch.cat([next_state, mean[..., self.obs_dim :]], dim=-1)
        return EnsemblePrediction(mean=mean, var=logvar.exp())

    def fit(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: np.ndarray
    ) -> list[float]:
        if not (len(obs) == len(action) == len(next_obs) == len(reward)) or len(obs) == 0:
            raise ValueError(
                "fit needs the same non-zero number of obs, actions, next obs and rewards; got "
                f"{len(obs)}, {len(action)}, {len(next_obs)}, {len(reward)}"
            )
        buffer = mbrl.util.replay_buffer.ReplayBuffer(
            len(obs),
            (self.obs_dim,),
            (self.action_dim,),
            obs_type=np.double,
            action_type=np.double,
            reward_type=np.double,
            rng=self._rng,
        )
        done = np.zeros(len(obs), dtype=bool)
        buffer.add_batch(obs, action, next_obs, reward, done, done)
        train_set, validation_set = mbrl.util.common.get_basic_buffer_iterators(
            buffer,
            self.batch_size,
            self.validation_ratio,
            ensemble_size=self.ensemble_size,
            shuffle_each_epoch=True,
        )
        self.transition_model.update_normalizer(buffer.get_all())
        train_losses, _ = self.trainer.train(
            train_set, validation_set, num_epochs=self.epochs, patience=self.patience, silent=True
        )
        return train_losses

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        """The input normaliser's statistics, so that ``state_dict`` round-trips the model."""
        normalizer = self.transition_model.input_normalizer
        return {"mean": normalizer.mean, "std": normalizer.std}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        normalizer = self.transition_model.input_normalizer
        normalizer.mean, normalizer.std = state["mean"], state["std"]

    def extra_repr(self) -> str:
        return f"members={self.ensemble_size}, learns_reward={self.learns_reward}"
