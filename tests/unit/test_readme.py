"""The README's snippets a new user copies: they must work with the code as it is."""

from __future__ import annotations

import re

import yaml

from maple.settings import describe, load_settings
from processors.sampling import build_policies, decode_config
from tests.helpers.environment import REPO

README = (REPO / "README.md").read_text()


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", README, re.DOTALL)


def test_the_local_development_sampling_file_parses_with_a_shorter_wait() -> None:
    [dev] = [block for block in _yaml_blocks() if block.startswith("# sampling-dev.yaml")]
    config = decode_config(yaml.safe_load(dev))
    assert config.decision_wait_ms == 2000 and [p.name for p in config.policies] == ["errors", "slow", "share"]
    assert len(build_policies(config, 1 / 6)) == 3


def test_the_collector_forwarding_config_is_consistent() -> None:
    [collector] = [yaml.safe_load(block) for block in _yaml_blocks() if "exporters:" in block]
    for name, pipeline in collector["service"]["pipelines"].items():
        assert set(pipeline["exporters"]) <= set(collector["exporters"]), name
        assert set(pipeline["receivers"]) <= set(collector["receivers"]), name
    assert collector["exporters"]["otlp_http/maple"]["endpoint"].endswith(":4318")


def test_every_maple_variable_the_readme_names_exists() -> None:
    names = set(re.findall(r"\b(MAPLE_[A-Z_]+[A-Z])\b", README))
    assert "MAPLE_WORKER_SEVERITY_FROM_BODY" in names and "MAPLE_TRACES_SAMPLING_CONFIG" in names
    known = {row["env"] for row in describe(load_settings(environ={}), {})} | {"MAPLE_CONFIG"}
    assert names - known == set()
