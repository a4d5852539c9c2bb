"""Methods are discovered through entry points; a third-party distribution can add one."""


import pytest
import pytorch_lightning as pl
from conftest import digits_dataset, fake_distribution, make_simclr, tiny_transform, trainer_kwargs

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback, registry
from lightly_unlearn.cli import main
from lightly_unlearn.errors import UnknownComponentError


def test_builtin_methods_and_aliases_resolve_through_entry_points():
    names = registry.available("method")
    for name in ("retrain", "finetune", "gradient_ascent", "neggrad", "l1_sparse", "ac"):
        assert name in names
    for alias, target in {"rt": "retrain", "ft": "finetune", "ga": "gradient_ascent", "ng": "neggrad", "l1": "l1_sparse"}.items():
        assert registry.load("method", alias).name == target
    assert "alignment_calibration" in registry.available("criterion")


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(UnknownComponentError, match="Available methods: ac, finetune"):
        UnlearnCallback(method="scrub")


@pytest.fixture
def third_party_plugin(tmp_path, monkeypatch):
    """A distribution installed on sys.path that declares one more method."""
    fake_distribution(tmp_path, "halfgrad-plugin", "[lightly_unlearn.methods]\nhalfgrad = halfgrad_plugin:HalfGrad\n",
                      {"halfgrad_plugin.py": '''
        from lightly_unlearn.methods.base import UnlearningMethod
        from lightly_unlearn.methods.retrain import mean_row_loss

        class HalfGrad(UnlearningMethod):
            name = "halfgrad"
            summary = "Half the fine-tune loss (a test plugin)."
            data = "retain"
            defaults = {"scale": 0.5}

            def objective(self, ctx):
                return self.hparams["scale"] * mean_row_loss(ctx)
    '''})
    monkeypatch.syspath_prepend(str(tmp_path))
    return "halfgrad"


def test_third_party_distribution_adds_a_method(third_party_plugin, tmp_path, capsys):
    assert third_party_plugin in registry.available("method")
    cb = UnlearnCallback(method="halfgrad", scale=0.25)
    assert cb.method.hparams == {"scale": 0.25}
    dm = ForgetRetainDataModule(digits_dataset(24), [0, 1], tiny_transform(), batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path), callbacks=[cb])
    trainer.fit(make_simclr("pl")(), datamodule=dm)
    assert float(trainer.callback_metrics["unlearn_loss"]) > 0
    assert main(["list", "method"]) == 0
    out = capsys.readouterr().out
    assert "halfgrad: Half the fine-tune loss" in out and "scale = 0.5" in out


def test_runtime_registration_wins_and_can_be_removed():
    from lightly_unlearn.methods.finetune import FineTune

    registry.register("method", "mine", FineTune)
    try:
        assert registry.load("method", "mine") is FineTune
    finally:
        registry.unregister("method", "mine")
    assert "mine" not in registry.available("method")


def test_list_prints_every_method_with_hyperparameters(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "ac (aliases: alignment_calibration)" in out
    assert "alpha = 1.0" in out and "lam = 1.0" in out and "ga" in out
    assert "criteria (lightly_unlearn.criteria)" in out


def test_builtin_names_cannot_be_registered_over():
    from lightly_unlearn.errors import ConfigurationError
    from lightly_unlearn.methods.finetune import FineTune

    for name in ("ac", "alignment_calibration", "ga"):  # a name, and aliases of built-ins
        with pytest.raises(ConfigurationError, match="built-in name of lightly-unlearn"):
            registry.register("method", name, FineTune)
    assert registry.load("method", "ac").name == "ac"


@pytest.fixture
def shadowing_plugin(tmp_path, monkeypatch):
    """An installed distribution that declares the built-in name ``ac`` for its own class."""
    fake_distribution(tmp_path, "shadow-plugin",
                      "[lightly_unlearn.methods]\nac = lightly_unlearn.methods.finetune:FineTune\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_plugin_cannot_replace_a_builtin_method(shadowing_plugin):
    from lightly_unlearn.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="'ac' is built into lightly-unlearn, and shadow-plugin"):
        UnlearnCallback(method="ac")
    assert UnlearnCallback(method="neggrad").method.name == "neggrad"  # other names unaffected


def test_loss_adapters_have_their_own_group_and_the_old_kind_name_still_works(capsys):
    assert registry.GROUPS["loss_adapter"] == "lightly_unlearn.loss_adapters"
    assert {"ntxent", "dcl", "negative_cosine_similarity", "clip", "dino"} <= set(registry.available("loss_adapter"))
    assert registry.available("loss") == registry.available("loss_adapter")
    assert main(["list", "loss"]) == 0
    assert "loss adapters (criteria UnlearnCallback can unlearn through) (lightly_unlearn.loss_adapters)" in capsys.readouterr().out


def test_a_plugin_in_the_old_loss_group_still_loads_with_a_deprecation_warning(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "old-loss-plugin", "[lightly_unlearn.losses]\nmy_cosine = old_loss_plugin:MyCosineAdapter\n",
                      {"old_loss_plugin.py": '''
        from lightly.loss import NegativeCosineSimilarity
        from lightly_unlearn.losses.negative_cosine import NegativeCosineAdapter

        class MyCosine(NegativeCosineSimilarity):
            pass

        class MyCosineAdapter(NegativeCosineAdapter):
            name = "my_cosine"
            criterion_types = (MyCosine,)
    '''})
    monkeypatch.syspath_prepend(str(tmp_path))
    from lightly_unlearn.losses.adapter import find_adapter

    with pytest.warns(DeprecationWarning, match="old-loss-plugin .*'lightly_unlearn.losses'.*'lightly_unlearn.loss_adapters'"):
        assert "my_cosine" in registry.available("loss_adapter")
    import old_loss_plugin

    with pytest.warns(DeprecationWarning):
        assert find_adapter(old_loss_plugin.MyCosine()).name == "my_cosine"


def test_a_plugin_in_the_old_loss_group_cannot_replace_a_builtin_adapter(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "old-shadow", "[lightly_unlearn.losses]\nntxent = lightly_unlearn.losses.dcl:DCLAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from lightly_unlearn.errors import ConfigurationError

    with pytest.warns(DeprecationWarning), pytest.raises(ConfigurationError, match="'ntxent' is built into lightly-unlearn, and old-shadow"):
        registry.load("loss_adapter", "ntxent")
