"""The forget set a receipt commits to: committed from the datamodule, or the caller's
commitment checked against it."""

from __future__ import annotations

from typing import Any

from lightly_unlearn.errors import ConfigurationError
from lightly_unlearn.forget_commitment import ForgetCommitment, commit_forget_set, forget_contents


def commit_datamodule_forget_set(
    dm: Any, given: ForgetCommitment | None
) -> tuple[ForgetCommitment | None, str | None]:
    """``(commitment, why_missing)`` for the datamodule's forget set.

    Without ``given``, the forget items are read and committed by content (``None`` and the
    reason when they cannot be). With ``given`` (committed earlier, e.g. by the CLI before any
    user code ran), it must have one item per forget sample and, when the dataset names its
    items' files, the same names and contents: otherwise the receipt would not describe the data
    that is unlearned (:class:`ConfigurationError`).
    """
    dataset, positions = getattr(dm, "dataset", None), getattr(dm, "forget_indices", None)
    if positions is None:
        return None, "the datamodule has no forget_indices, so no forget items could be committed"
    positions = [int(p) for p in positions]
    if given is None:
        return commit_forget_set(dataset, positions)
    if len(given.names) != len(positions):
        raise ConfigurationError(
            f"ReceiptCallback(forget_commitment=...) commits to {len(given.names)} items, "
            f"but the datamodule forgets {len(positions)} samples."
        )
    contents, _ = forget_contents(dataset, positions)
    if contents is not None and contents.kind == given.kind:
        ours = sorted(zip(contents.names, (h.hex() for h in contents.content_sha256)))
        theirs = sorted(zip(given.names, given.content_sha256))
        changed = [name for (name, h), (_, g) in zip(ours, theirs) if h != g]
        if [n for n, _ in ours] != [n for n, _ in theirs] or changed:
            raise ConfigurationError(
                "ReceiptCallback(forget_commitment=...) does not describe the datamodule's "
                "forget set: "
                + (f"the content of {changed[:5]} changed after it was committed"
                   if changed else "the committed names differ from the forget items' files")
                + ". The receipt would not describe the data that is unlearned."
            )
    return given, None
