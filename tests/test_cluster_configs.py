"""The Ray cluster launcher configs pass Ray's own validation, the one `ray up` runs before it reaches a cloud.

`ray up` (ray.autoscaler._private.commands._bootstrap_config) calls `prepare_config` (merges the provider's
defaults.yaml, folds setup_commands into head/worker_setup_commands, fills per-type worker counts; for the
local provider it builds the single node type) and then `validate_config` (jsonschema against the
ray-schema.json shipped in the ray package, plus checks on head_node_type and worker counts). Both are pure
functions of the YAML: no network, no boto3. The raw file is also checked against the same schema before the
defaults are merged in, so a misspelled key cannot hide behind a default.
"""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["ray_cluster.yaml", "ray_cluster.local.yaml"]
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def ray_validate(config: dict) -> dict:
    """Validates like `ray up` does before it contacts a provider; returns the prepared config."""
    jsonschema.validate(config, SCHEMA)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_validation(name):
    prepared = ray_validate(load(name))
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_aws_config_has_a_cpu_head_and_autoscaling_gpu_workers():
    config = load("ray_cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"]
    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert gpu_types, "no GPU worker type"
    assert all(t.get("min_workers", 0) == 0 for t in gpu_types.values()), "GPU workers must scale from zero"
    instance_types = {t["node_config"]["InstanceType"] for t in gpu_types.values()}
    assert instance_types & {"g5.xlarge", "g6.xlarge"}
    assert all(t["node_config"]["ImageId"].startswith("ami-") for t in types.values())


def test_local_config_targets_this_machine_by_default():
    provider = load("ray_cluster.local.yaml")["provider"]
    assert provider == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}


@pytest.mark.parametrize(
    "break_it, error",
    [
        (lambda c: c.update(provder=c.pop("provider")), jsonschema.ValidationError),  # required key misspelled
        (lambda c: c.update(setup_comands=c.pop("setup_commands")), jsonschema.ValidationError),  # unknown key
        (lambda c: c["auth"].update(ssh_usr=c["auth"].pop("ssh_user")), jsonschema.ValidationError),
        (lambda c: c.update(setup_commands="pip install -e ~/curate"), jsonschema.ValidationError),  # not a list
    ],
)
@pytest.mark.parametrize("name", CONFIGS)
def test_broken_copies_are_rejected(name, break_it, error):
    config = load(name)
    break_it(config)
    with pytest.raises(error):
        ray_validate(config)


def test_broken_node_types_are_rejected():
    config = load("ray_cluster.yaml")
    worker = next(n for n in config["available_node_types"] if n != config["head_node_type"])
    misspelled = copy.deepcopy(config)
    misspelled["available_node_types"][worker]["node_confg"] = misspelled["available_node_types"][worker].pop(
        "node_config"
    )
    with pytest.raises(jsonschema.ValidationError):
        ray_validate(misspelled)
    no_head = copy.deepcopy(config)
    no_head["head_node_type"] = "ray.head.missing"
    with pytest.raises(ValueError, match="head_node_type"):
        ray_validate(no_head)


def _setuptools() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_folders() -> set[str]:
    """Returns the top-level folders that pyproject.toml's packages come from (its packages.find include patterns)."""
    patterns = _setuptools()["packages"]["find"]["include"]
    return {pattern.split(".")[0].rstrip("*") for pattern in patterns}


SOURCE = "~/curate-src/"  # where the configs copy the repo on every node


@pytest.mark.parametrize("name", CONFIGS)
def test_file_mounts_copy_what_pip_install_needs(name):
    mounts = load(name)["file_mounts"]
    for remote, path in mounts.items():
        assert remote == SOURCE + path.removeprefix("./"), "each path keeps its place in the repo"
    local = {path.removeprefix("./") for path in mounts.values()}
    needed = _package_folders() | {"pyproject.toml", "README.md", "requirements.lock", "pipelines"}
    assert needed <= local, f"add to file_mounts: {sorted(needed - local)}"
    missing = sorted(path for path in local if not (ROOT / path).exists())
    assert not missing, f"file_mounts name paths the repo lacks (rsync would fail): {missing}"


@pytest.mark.parametrize("name", CONFIGS)
def test_nothing_in_home_shadows_the_installed_package(name):
    # `ray submit` runs ~/SCRIPT.py, so ~ is sys.path[0] on the head: a ~/curate folder (or ~/filters, ...)
    # would be imported as a namespace package instead of the editable install.
    tops = {remote.removeprefix("~/").split("/")[0] for remote in load(name)["file_mounts"]}
    packages = _package_folders()
    assert not tops & packages, f"file_mounts put {sorted(tops & packages)} in the home folder"


@pytest.mark.parametrize("name", CONFIGS)
def test_setup_commands_install_this_project_first_on_path(name):
    prepared = ray_validate(load(name))
    for key in ("head_setup_commands", "worker_setup_commands"):  # what the nodes actually run
        commands = " ; ".join(prepared[key])
        editable = r'pip install .*-e "?(~|\$HOME)/curate-src(\[[\w,]+\])?"?(\s|;|$)'  # with extras or not
        assert re.search(editable, commands), f"{key} does not pip install -e the source"
        assert f"-c {SOURCE}requirements.lock" in commands, f"{key} ignores the lock file"
        # `ray submit` runs plain `python` in a login shell: ~/.bashrc must put the venv first on PATH.
        assert re.search(r"echo 'export PATH=\"\$HOME/curate-venv/bin:\$PATH\".*>> ~/\.bashrc", commands)
