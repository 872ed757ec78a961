"""A plugin from a separate, pip-installed package extends the framework without touching it."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.0.1"

[project.entry-points."framework.plugins"]
{module} = "{module}.plugin"

[tool.setuptools]
packages = ["{module}", "{module}.configs"]

[tool.setuptools.package-data]
"{module}.configs" = ["**/*.yaml"]
"""

MEAN_STD_PLUGIN = '''
import os
from pathlib import Path

from framework.interfaces import UncertaintyEstimator
from framework.plugins import hookimpl


class MeanMemberStd(UncertaintyEstimator):
    """Average predicted standard deviation over members and dimensions, times `scale`."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, prediction):
        Path(os.environ["DEMO_PLUGIN_MARKER"]).write_text(str(self.scale))
        return self.scale * prediction.std.mean(dim=(0, 2))


@hookimpl
def register_components(registry, plugin):
    registry.add("uncertainty", "mean_member_std", MeanMemberStd, plugin=plugin)


@hookimpl
def config_searchpath():
    return "pkg://demo_uncertainty.configs"
'''

CLASHING_PLUGIN = """
from framework.library.uncertainty import TotalVariance
from framework.plugins import hookimpl


@hookimpl
def register_components(registry, plugin):
    registry.add("uncertainty", "disagreement", TotalVariance, plugin=plugin)
"""


def install_package(root: Path, module: str, plugin_code: str, configs: dict[str, str]) -> Path:
    """Write a package with its own entry point and pip-install it into `root/site`."""
    source = root / f"src_{module}"
    (source / module / "configs").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PYPROJECT.format(dist=f"demo-{module}", module=module))
    (source / module / "__init__.py").write_text("")
    (source / module / "plugin.py").write_text(textwrap.dedent(plugin_code))
    (source / module / "configs" / "__init__.py").write_text("")
    for relative, text in configs.items():
        (source / module / "configs" / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / module / "configs" / relative).write_text(text)
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return site


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    return install_package(
        tmp_path_factory.mktemp("demo"),
        "demo_uncertainty",
        MEAN_STD_PLUGIN,
        {"uncertainty/mean_member_std.yaml": "name: mean_member_std\nscale: 2.0\n"},
    )


def test_installed_plugin_is_listed(framework_cli, demo_site, tmp_path):
    result = framework_cli("list", cwd=tmp_path, env={"PYTHONPATH": str(demo_site)})
    assert result.returncode == 0, result.stderr
    assert "demo_uncertainty" in result.stdout
    assert "mean_member_std (demo_uncertainty)" in result.stdout


def test_pets_runs_with_the_plugins_uncertainty(framework_cli, demo_site, tmp_path):
    marker, run_dir = tmp_path / "called", tmp_path / "run"
    result = framework_cli(
        "run",
        "+algo=pets",
        "+experiment=smoke",
        "uncertainty=mean_member_std",
        "algo.alpha=1.0",
        f"hydra.run.dir={run_dir}",
        "progress=false",
        cwd=tmp_path,
        env={"PYTHONPATH": str(demo_site), "DEMO_PLUGIN_MARKER": str(marker)},
    )
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "2.0"  # the plugin's estimator, with its own config's value
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["uncertainty"] == {"name": "mean_member_std", "scale": 2.0}


def test_without_the_plugin_its_name_is_unknown(framework_cli, tmp_path):
    result = framework_cli("run", "+algo=pets", "uncertainty=mean_member_std", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'uncertainty/mean_member_std'" in result.stderr


def test_two_plugins_registering_one_name_fail_naming_both(framework_cli, tmp_path):
    site = install_package(tmp_path, "clashing_plugin", CLASHING_PLUGIN, {})
    result = framework_cli("list", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert "uncertainty 'disagreement' is registered twice" in result.stderr
    assert "'core'" in result.stderr and "'clashing_plugin'" in result.stderr
