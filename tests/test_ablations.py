"""ecnf.ablations is the one definition of the seed paper's ablation runs: it rebuilds the
configuration stored in every shipped ablation checkpoint, field by field."""

import dataclasses

import pytest

from ecnf import TrainConfig
from ecnf.ablations import ABLATIONS, training_config
from ecnf.checkpoint import checkpoint_info
from ecnf.nets import ResNetConfig

#: What the stored configurations hold beyond the recipe: where and how often a run wrote.
NOT_RECIPE = {"out_dir", "device", "data_root", "download", "sample_every", "num_preview"}


@pytest.mark.parametrize("ablation", sorted({ab.name for ab in ABLATIONS}))
def test_definition_rebuilds_the_shipped_configuration(ablation):
    entry = next(ab for ab in ABLATIONS if ab.name == ablation)
    stored = TrainConfig.from_dict(checkpoint_info(entry.path)["train_state"]["config"])
    ours = training_config(entry)
    for field in dataclasses.fields(TrainConfig):
        if field.name in NOT_RECIPE:
            continue
        assert getattr(ours, field.name) == getattr(stored, field.name), (ablation, field.name)


def test_smaller_budgets_change_only_what_is_asked():
    small = training_config("resnet", data="digits", data_shape=(1, 8, 8), width=64, iterations=10)
    assert isinstance(small.model, ResNetConfig)
    assert (small.model.width, small.model.data_shape, small.iterations) == (64, (1, 8, 8), 10)
    assert small.lr == training_config("resnet").lr and small.data == "digits"
    assert training_config("config_a").ema_decay == 0.0


def test_unknown_ablation_is_named():
    with pytest.raises(ValueError, match="unknown ablation 'widest'"):
        training_config("widest")
