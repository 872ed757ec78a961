"""The contracts every component implements. Each class docstring is its contract."""

from framework.interfaces.algorithm import Algorithm, RunContext
from framework.interfaces.dynamics import DynamicsEnsemble, EnsemblePrediction, TransitionEnsemble
from framework.interfaces.encoder import Encoder
from framework.interfaces.env import Demonstrator, EnvFactory
from framework.interfaces.planner import Planner, Policy, TrainablePolicy
from framework.interfaces.uncertainty import UncertaintyEstimator

__all__ = [
    "Algorithm",
    "Demonstrator",
    "DynamicsEnsemble",
    "Encoder",
    "EnsemblePrediction",
    "EnvFactory",
    "Planner",
    "Policy",
    "RunContext",
    "TrainablePolicy",
    "TransitionEnsemble",
    "UncertaintyEstimator",
]
