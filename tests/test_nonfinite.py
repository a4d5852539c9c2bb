"""Non-finite guard (issue #6): gradient ascent with a huge learning rate stops with a clear
``NonFiniteLossError``, and the module keeps the weights (and BatchNorm buffers) it had after the
last finite step: all finite, equal to a snapshot taken after that step."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from conftest import digits_dataset, make_simclr, tiny_transform, trainer_kwargs

from lightly_unlearn import ForgetRetainDataModule, NonFiniteLossError, UnlearnCallback


class Snapshots(L.Callback):
    """State after every completed step (runs after UnlearnCallback's own check)."""

    def __init__(self):
        self.states = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.states.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


@pytest.mark.parametrize(
    "lr, message",
    [
        (1e30, "objective became nan"),  # huge finite step: the next forward overflows
        (float("inf"), "optimizer step .* made"),  # the step itself makes weights inf/NaN
    ],
    ids=["nan_loss", "nonfinite_step"],
)
def test_gradient_ascent_with_huge_lr_keeps_last_finite_weights(tmp_path, lr, message):
    class Diverging(make_simclr("L")):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr)

    torch.manual_seed(0)
    model = Diverging()
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dm = ForgetRetainDataModule(digits_dataset(32), list(range(16)), tiny_transform(), batch_size=8)
    snaps = Snapshots()
    trainer = L.Trainer(
        **trainer_kwargs(tmp_path, max_epochs=20), callbacks=[UnlearnCallback("ga"), snaps]
    )
    with pytest.raises(NonFiniteLossError, match=message) as err:
        trainer.fit(model, datamodule=dm)
    assert "Lower the learning rate" in str(err.value)
    state = model.state_dict()
    for name, value in state.items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), name
    last = snaps.states[-1] if snaps.states else initial  # the last finite step's state
    for name, value in state.items():
        assert torch.equal(value, last[name]), name
    assert "forward" not in vars(model.criterion)  # the user's criterion is given back
    assert not list(tmp_path.rglob("*.ckpt"))
