"""--arch / --where plumbing that needs no smp: configs, compare options, missing-smp errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lkmseg.bench.study import CompareOptions, _mismatches, _run_config
from lkmseg.cli.app import app
from lkmseg.config import RunConfig
from lkmseg.errors import UserError
from lkmseg.models import NATIVE, ModelConfig, build_model
from lkmseg.models.arch import smp_available


def test_smp_config_defaults_to_the_model_as_built_and_round_trips():
    m = ModelConfig(arch="smp:Unet:resnet18")
    assert m.block == NATIVE and m.spec.family == "square" and m.spec.kernel == 0
    m = ModelConfig(arch="smp:FPN:mobilenet_v2", block="1xk", where="decoder", rank=0.5)
    assert (m.block, m.spec.family) == ("1xK", "separable")
    back = RunConfig.from_dict(RunConfig(model=m).to_dict()).model
    assert back == m
    with pytest.raises(UserError, match="applies to --arch unet only"):
        ModelConfig(arch="smp:Unet:resnet18", base="3x3")


def test_compare_options_carry_arch_and_where():
    o = CompareOptions(blocks=["1x5"], where="decoder")
    cfg = _run_config(o, "1x5")
    assert (cfg.model.arch, cfg.model.where, cfg.model.base) == ("unet", "decoder", "5x5")
    other = _run_config(CompareOptions(blocks=["1x5"]), "1x5")
    assert _mismatches(CompareOptions(blocks=["1x5"]), cfg, other) == \
        ["--where decoder (now all)"]


def test_cli_compare_bad_arch_is_one_line():
    r = CliRunner().invoke(app, ["compare", "--arch", "resnet", "--blocks", "1x5"])
    assert r.exit_code == 2 and "unknown arch 'resnet'" in r.output, r.output


@pytest.mark.skipif(smp_available() is None, reason="checks the message shown without smp")
def test_smp_arch_without_smp_names_the_extra():
    with pytest.raises(UserError, match=r"pip install 'lkmseg\[smp\]'"):
        build_model(ModelConfig(arch="smp:Unet:resnet18", block="1x5"))
