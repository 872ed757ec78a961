"""Model-based RL framework: interfaces, a plugin-fed component registry and a Hydra CLI."""

__version__ = "0.1.0"
