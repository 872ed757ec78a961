"""The component registry: clashes, unknown names, interface and argument checks."""

import pytest

from framework.interfaces import UncertaintyEstimator
from framework.library.uncertainty import EnsembleDisagreement, TotalVariance
from framework.plugins import load_plugins
from framework.registry import ComponentRegistry, RegistryError


def test_same_name_from_two_plugins_names_both():
    registry = ComponentRegistry()
    registry.add("uncertainty", "spread", EnsembleDisagreement, plugin="alpha_pkg")
    with pytest.raises(RegistryError, match="'alpha_pkg' and by plugin 'beta_pkg'"):
        registry.add("uncertainty", "spread", TotalVariance, plugin="beta_pkg")


def test_unknown_name_lists_the_valid_ones():
    registry = ComponentRegistry()
    registry.add("uncertainty", "b_est", EnsembleDisagreement, plugin="p")
    registry.add("uncertainty", "a_est", TotalVariance, plugin="p")
    with pytest.raises(
        RegistryError, match="no uncertainty named 'zzz'.*valid names: a_est, b_est"
    ):
        registry.build("uncertainty", {"name": "zzz"})


def test_unknown_kind_and_wrong_interface_are_refused():
    registry = ComponentRegistry()
    with pytest.raises(RegistryError, match="unknown kind 'optimiser'"):
        registry.add("optimiser", "x", EnsembleDisagreement, plugin="p")
    with pytest.raises(RegistryError, match="does not subclass Planner"):
        registry.add("planner", "x", EnsembleDisagreement, plugin="p")


def test_build_passes_config_and_runtime_arguments():
    class Scaled(UncertaintyEstimator):
        def __init__(self, scale: float, offset: int = 0) -> None:
            self.scale, self.offset = scale, offset

        def __call__(self, prediction):
            raise NotImplementedError

    registry = ComponentRegistry()
    registry.add("uncertainty", "scaled", Scaled, plugin="p")
    built = registry.build("uncertainty", {"name": "scaled", "scale": 2}, offset=3)
    assert (built.scale, built.offset) == (2, 3)
    with pytest.raises(RegistryError, match=r"uncertainty.offset must be int; got 1.5"):
        registry.build("uncertainty", {"name": "scaled", "scale": 1.0, "offset": 1.5})
    with pytest.raises(RegistryError, match="uncertainty.scale must be float; got 'big'"):
        registry.build("uncertainty", {"name": "scaled", "scale": "big"})
    with pytest.raises(RegistryError, match="cannot build uncertainty"):
        registry.build("uncertainty", {"name": "scaled", "scale": 1.0, "colour": "red"})


def test_installed_plugins_provide_the_four_component_kinds():
    loaded = load_plugins()
    names = {info.name for info in loaded.plugins}
    assert {"core", "baselines"} <= names
    registry = loaded.registry
    assert {"none", "disagreement", "total_variance", "max_aleatoric", "max_pairwise"} <= set(
        registry.names("uncertainty")
    )
    assert {"identity", "mlp", "conv"} <= set(registry.names("encoder"))
    assert {"cem", "icem", "mppi"} <= set(registry.names("planner"))
    assert "gaussian_mlp" in registry.names("dynamics")
    assert "pets" in registry.names("algo")
    assert "pkg://framework_baselines.configs" in loaded.searchpaths
