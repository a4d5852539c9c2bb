"""CLIPModule: every method runs on it, logit-scale clamp, checkpoints, offline loading."""

import math
import time

import lightning.pytorch as L
import pytest
import pytorch_lightning as pl
import torch
from conftest import digits_dataset, method_hparams, registered_methods, trainer_kwargs

from lightly_unlearn import CLIPModule, ForgetRetainDataModule, PLCLIPModule, UnlearnCallback
from lightly_unlearn.clip import (
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    CaptionDataset,
    create_clip,
    init_open_clip_parameters,
    load_clip_weights,
)
from lightly_unlearn.clip.data import tiny_clip_kwargs
from lightly_unlearn.errors import PretrainedWeightsUnavailable

METHODS = registered_methods()
NAME = "ViT-B-32"


def _module(cls=CLIPModule, **kw):
    torch.manual_seed(0)
    return cls(model_name=NAME, model_kwargs=tiny_clip_kwargs(width=32, embed_dim=16), **kw)


def _dm(module, n=32, forget=tuple(range(0, 32, 4)), batch_size=8):
    pairs = CaptionDataset(digits_dataset(n), DIGIT_NAMES, DIGIT_TEMPLATES)
    return ForgetRetainDataModule(
        pairs, list(forget), module.preprocess_train, batch_size=batch_size,
        tokenizer=module.tokenizer, eval_transform=module.preprocess_val,
    )


def _audited_dm(module):
    """48 caption pairs (every 4th forgotten) and 16 never-seen pairs as holdout."""
    pairs = CaptionDataset(digits_dataset(48), DIGIT_NAMES, DIGIT_TEMPLATES)
    holdout = CaptionDataset(digits_dataset(16, offset=100), DIGIT_NAMES, DIGIT_TEMPLATES)
    return ForgetRetainDataModule(
        pairs, list(range(0, 48, 4)), module.preprocess_train, batch_size=8, holdout=holdout,
        tokenizer=module.tokenizer, eval_transform=module.preprocess_val,
    )


@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_one_epoch(tmp_path, method):
    module = _module()
    with torch.no_grad():  # above open_clip's ceiling: the step's clamp must bring it back
        module.model.logit_scale.fill_(6.0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    cb = UnlearnCallback(method=method, **method_hparams(method, clip=True))
    trainer = L.Trainer(**trainer_kwargs(tmp_path), callbacks=[cb])
    trainer.fit(module, datamodule=_dm(module))
    loss = trainer.callback_metrics["unlearn_loss"]
    assert torch.isfinite(loss)
    after = module.state_dict()
    assert after.keys() == before.keys()
    assert not torch.equal(before["model.visual.conv1.weight"], after["model.visual.conv1.weight"])
    assert "forward" not in vars(module.criterion)
    assert module.model.logit_scale.item() <= math.log(100) + 1e-6
    if method != "retrain":  # (Retrain re-initialises it to ln(1/0.07) instead)
        assert module.model.logit_scale.item() == pytest.approx(math.log(100), abs=0.01)
    if method == "gradient_ascent":
        assert loss < 0
    if method == "retrain":  # positional embeddings are re-drawn too (not only reset_parameters layers)
        assert not torch.equal(before["model.positional_embedding"], after["model.positional_embedding"])


def test_pytorch_lightning_namespace_and_ac_beta_uses_own_caption(tmp_path, monkeypatch):
    from lightly_unlearn.callbacks.unlearning.objective import PatchedObjective

    module = _module(PLCLIPModule)
    seen = {}
    cb = UnlearnCallback(method="ac", beta=1.0)
    original = PatchedObjective.extra_embeddings

    def spy(self, extra, forget):
        out = original(self, extra, forget)
        seen["shape"] = None if out is None else tuple(out.shape)
        seen["norm"] = None if out is None else out.norm(dim=-1)
        return out

    monkeypatch.setattr(PatchedObjective, "extra_embeddings", spy)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=[cb])
    trainer.fit(module, datamodule=_dm(module))
    assert seen["shape"] is not None and seen["shape"][1] == 16  # text embeddings of forget pairs
    torch.testing.assert_close(seen["norm"], torch.ones_like(seen["norm"]))


def test_logit_scale_clamped_after_step(tmp_path):
    module = _module(lr=0.5)
    with torch.no_grad():
        module.model.logit_scale.fill_(math.log(100) + 0.5)
    trainer = L.Trainer(**trainer_kwargs(tmp_path, max_steps=1))
    trainer.fit(module, datamodule=_dm(module))
    assert module.model.logit_scale.item() <= math.log(100) + 1e-6
    assert module.criterion.rank == 0 and module.criterion.world_size == 1


def test_lightning_checkpoint_round_trip(tmp_path):
    module = _module()
    trainer = L.Trainer(**trainer_kwargs(tmp_path, max_steps=1))
    trainer.fit(module, datamodule=_dm(module))
    path = tmp_path / "clip.ckpt"
    trainer.save_checkpoint(path)
    loaded = CLIPModule.load_from_checkpoint(path)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    # the same checkpoint feeds a plain open_clip model
    model = create_clip(NAME, with_transforms=False, **tiny_clip_kwargs(width=32, embed_dim=16))
    load_clip_weights(model, torch.load(path, map_location="cpu", weights_only=True))
    torch.testing.assert_close(model.logit_scale, module.model.logit_scale)
    # and a module built around an existing model loads with model=
    again = CLIPModule.load_from_checkpoint(path, model=model)
    torch.testing.assert_close(again.model.positional_embedding, module.model.positional_embedding)


def test_open_clip_checkpoint_file_and_state_dict(tmp_path):
    source = _module()
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in source.model.state_dict().items()}}, path)
    module = _module(checkpoint=str(path))
    torch.testing.assert_close(module.model.text_projection, source.model.text_projection)
    module2 = CLIPModule(model=create_clip(NAME, with_transforms=False, **tiny_clip_kwargs(width=32, embed_dim=16)),
                         checkpoint=source.model.state_dict())
    torch.testing.assert_close(module2.model.text_projection, source.model.text_projection)


def test_uncached_pretrained_tag_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailable, match="not in the local cache"):
        create_clip("ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    with pytest.raises(PretrainedWeightsUnavailable, match="known tags"):
        create_clip("ViT-B-32", pretrained="no_such_tag", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5


def test_init_open_clip_parameters_covers_every_parameter():
    model = create_clip(NAME, with_transforms=False, **tiny_clip_kwargs(width=32, embed_dim=16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        missed = init_open_clip_parameters(model)
    assert missed == []
    assert abs(model.logit_scale.item() - math.log(1 / 0.07)) < 1e-6
    for key in ("positional_embedding", "text_projection", "visual.class_embedding", "visual.proj"):
        assert not torch.equal(before[key], model.state_dict()[key])
    # as at construction: every weight has the spread a freshly built model's has (a wrong
    # scale, or a tensor left as the trained values, shows as a ratio far from 1)
    torch.manual_seed(1)
    fresh = create_clip(NAME, with_transforms=False, **tiny_clip_kwargs(width=32, embed_dim=16))
    for key, value in fresh.state_dict().items():
        if value.is_floating_point() and value.numel() >= 64 and value.std() > 0:
            ratio = float(model.state_dict()[key].std() / value.std())
            assert 0.7 < ratio < 1.4, (key, ratio)


def test_audit_callback_runs_image_side_audits_on_clip(tmp_path):
    """AuditCallback works on CLIPModule as on SimCLR: image features via encode_image, labels
    (not captions) as targets."""
    from lightly_unlearn import AuditCallback

    module = _module()
    dm = _audited_dm(module)
    cb = AuditCallback(num_samples=16, num_views=2, save_files=False)
    trainer = L.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=[cb, UnlearnCallback("finetune")])
    trainer.fit(module, datamodule=dm)
    metrics = {k: v for r in cb.after.values() for k, v in r.metrics.items()}
    assert {"emia", "ra", "ua", "cmia"} <= set(metrics), metrics
    # digit labels (not captions) are the targets: 16 sampled retain and all 12 forget pairs
    # are scored, and a probe fitted on the retain labels beats chance (10 %) on them
    assert metrics["ra_samples"] == 16 and metrics["ua_samples"] == 12
    assert metrics["ra"] > 30


def test_audit_callback_runs_the_clip_audits(tmp_path):
    """The four CLIP audits run from AuditCallback on CLIPModule, with the gap heat map file."""
    from lightly_unlearn import AuditCallback

    module = _module()
    dm = _audited_dm(module)
    audits = ("clip_mia", "clip_retrieval", "clip_zero_shot", "clip_alignment_matrix", "emia")
    cb = AuditCallback(audits=audits, num_samples=16, num_views=2, classnames=DIGIT_NAMES,
                       templates=DIGIT_TEMPLATES[:2])
    kw = trainer_kwargs(tmp_path, max_steps=2, logger=L.loggers.CSVLogger(tmp_path))
    trainer = L.Trainer(**kw, callbacks=[UnlearnCallback("ac", beta=1.0), cb])
    trainer.fit(module, datamodule=dm)
    metrics = {k: v for r in cb.after.values() for k, v in r.metrics.items()}
    assert {"clip_mia", "clip_forgetting_score", "emia"} <= set(metrics), sorted(metrics)
    assert any(k.startswith("zero_shot") or "zs" in k for k in metrics), sorted(metrics)
    assert (tmp_path / "lightning_logs" / "version_0" / "audits" / "gap_matrix.png").is_file()


def test_audit_callback_runs_clip_audits_alone_and_module_built_from_a_model(tmp_path):
    """Only CLIP audits (no image-side features needed), on a CLIPModule built around a model
    object: it derives its train/val transforms from the model's preprocessing config."""
    from lightly_unlearn import AuditCallback

    model = create_clip(NAME, with_transforms=False, **tiny_clip_kwargs(width=32, embed_dim=16))
    module = CLIPModule(model)
    assert callable(module.preprocess_train) and callable(module.preprocess_val)
    cb = AuditCallback(audits=("clip_mia", "clip_alignment_matrix"), num_samples=16, save_files=False)
    trainer = L.Trainer(**trainer_kwargs(tmp_path, max_steps=1), callbacks=[UnlearnCallback("finetune"), cb])
    trainer.fit(module, datamodule=_audited_dm(module))
    assert {"clip_mia", "clip_forgetting_score"} <= {k for r in cb.after.values() for k in r.metrics}
