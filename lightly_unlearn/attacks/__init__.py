"""Attacks that test the evidence: they train a *copy* of an unlearned model and re-audit it.

Audits (:mod:`lightly_unlearn.audits`) only read a model; an attack may train, but never the
user's model: :func:`~lightly_unlearn.attacks.relearn.relearn` works on a deep copy.
"""

from lightly_unlearn.attacks.relearn import RelearnResult, relearn

__all__ = ["RelearnResult", "relearn"]
