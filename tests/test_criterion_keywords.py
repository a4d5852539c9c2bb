"""A ``training_step`` may call its criterion with keyword arguments (the names of the loss's own
``forward``): every loss adapter reads them, and every method unlearns through such a step."""

from __future__ import annotations

import copy
import inspect

import conftest
import lightning.pytorch as L
import pytest
import pytorch_lightning as pl
import torch
from conftest import (
    MODEL_FACTORIES,
    digits_dataset,
    method_hparams,
    registered_methods,
    tiny_transform,
    trainer_kwargs,
)
from lightly.loss import DCLLoss, DINOLoss, NegativeCosineSimilarity, NTXentLoss
from torch import nn

from lightly_unlearn import ForgetRetainDataModule, UnlearnCallback, registry
from lightly_unlearn.losses.adapter import find_adapter

METHODS = registered_methods()


class _Keywords(nn.Module):
    """Calls the wrapped criterion with every argument by keyword."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.names = list(inspect.signature(type(inner).forward).parameters)[1:]

    def forward(self, *args, **kwargs):
        return self.inner(**dict(zip(self.names, args)), **kwargs)


def keyword_calls(cls: type) -> type:
    """``cls`` whose ``training_step`` calls ``self.criterion(name=value, ...)``."""

    class KeywordCalls(cls):
        def training_step(self, batch, batch_idx):
            criterion = self.criterion
            self.criterion = _Keywords(criterion)
            try:
                return super().training_step(batch, batch_idx)
            finally:
                self.criterion = criterion

    return KeywordCalls


def _clip_case():
    open_clip = pytest.importorskip("open_clip")
    img, txt = nn.functional.normalize(torch.randn(6, 8), dim=1), nn.functional.normalize(torch.randn(6, 8), dim=1)
    return open_clip.ClipLoss(), (img, txt, torch.tensor(5.0))


CASES = {
    "ntxent": lambda: (NTXentLoss(), (torch.randn(6, 8), torch.randn(6, 8))),
    "dcl": lambda: (DCLLoss(), (torch.randn(6, 8), torch.randn(6, 8))),
    "negative_cosine_similarity": lambda: (NegativeCosineSimilarity(), (torch.randn(6, 8), torch.randn(6, 8))),
    "dino": lambda: (DINOLoss(output_dim=8), ([torch.randn(6, 8)] * 2, [torch.randn(6, 8)] * 3)),
    "clip": _clip_case,
}


@pytest.mark.parametrize("name", registry.available("loss_adapter"))
def test_every_adapter_reads_keyword_arguments_as_positional_ones(name):
    if name not in CASES:
        pytest.fail(f"loss adapter {name!r} has no case here: add its loss and arguments to CASES")
    torch.manual_seed(0)
    criterion, args = CASES[name]()
    adapter = find_adapter(criterion)
    assert adapter.name == name
    names = list(inspect.signature(type(criterion).forward).parameters)[1:]
    kwargs = dict(zip(names, args))
    for call in (1, 2):
        assert adapter.anchor(criterion, **kwargs, call=call) is adapter.anchor(criterion, *args, call=call)
        assert adapter.second(criterion, **kwargs, call=call) is adapter.second(criterion, *args, call=call)
    twin = copy.deepcopy(criterion)  # DINO's centre moves with each call
    positional = adapter.row_terms(criterion, *args)
    keywords = adapter.row_terms(twin, **kwargs)
    torch.testing.assert_close(keywords.loss, positional.loss)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model_name", sorted(MODEL_FACTORIES))
def test_a_step_calling_the_criterion_by_keyword_unlearns_with_every_method(tmp_path, model_name, method):
    torch.manual_seed(0)
    model = keyword_calls(MODEL_FACTORIES[model_name]())()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    transform = getattr(conftest, f"{model_name}_transform", tiny_transform)()
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(0, 32, 4)), transform, batch_size=8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, max_steps=2),
                         callbacks=[UnlearnCallback(method, **method_hparams(method))])
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["unlearn_loss"])
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if "backbone" in k)


@pytest.mark.parametrize("method", METHODS)
def test_clip_step_calling_the_criterion_by_keyword_unlearns(tmp_path, method):
    from test_clip_module import _dm, _module

    from lightly_unlearn import CLIPModule

    model = _module(keyword_calls(CLIPModule))
    trainer = L.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, max_steps=2),
                        callbacks=[UnlearnCallback(method, **method_hparams(method, clip=True))])
    trainer.fit(model, datamodule=_dm(model))
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["unlearn_loss"])
