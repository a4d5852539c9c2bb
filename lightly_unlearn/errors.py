"""The package's exceptions, in one small hierarchy.

Every error raised on purpose by lightly-unlearn derives from :class:`LightlyUnlearnError`, so
``except LightlyUnlearnError`` catches them all. Each class also keeps the built-in base it had
of its kind (``ValueError`` for bad values, ``TypeError`` for an object of the wrong
kind, ``RuntimeError`` for something that went wrong during a run), so code catching the built-in
types catches them too. This module is the one import path of each class.

::

    LightlyUnlearnError
    ├── ConfigurationError (ValueError)       a setting, argument or input value is unusable
    │   ├── ForgetSetError                    the forget set (ids, mask, list) is unusable
    │   │   └── ForgetListError               a forget list names no image of the folder
    │   ├── ResumeMismatchError               a checkpoint belongs to a different run
    │   ├── OutputPathError                   an output would overwrite or sit inside an input
    │   │   └── OutputFolderBusyError         another run holds the output folder
    │   ├── ModelSpecError                    a MODEL string, its import or checkpoint
    │   │   └── ModuleCodeError               a model file runs code when imported
    │   ├── AuditInputError                   an audit lacks the data it needs
    │   ├── SigningKeyError                   a signing / public key file is unusable
    │   └── UnknownComponentError (KeyError)  a method / audit / loss name resolves to nothing
    ├── ModuleContractError (TypeError)       the user's module lacks what a method needs
    ├── NamespaceMismatchError (TypeError)    lightning vs pytorch_lightning objects mixed
    ├── ReceiptError (ValueError)             a receipt is unreadable or malformed
    ├── NonFiniteLossError (FloatingPointError)  the objective became NaN / infinite
    ├── ForgetCoverageError (RuntimeError)    an epoch did not serve every forget sample
    ├── UntrustedCheckpointError (RuntimeError)  a checkpoint needs unsafe unpickling
    ├── PretrainedWeightsUnavailable (RuntimeError)  weights would need a download
    ├── AuditCLIError                         bad input to ``lightly-unlearn audit``
    ├── UnlearnInputError                     bad input to ``lightly-unlearn unlearn``
    └── InputChangedError                     an input changed while ``unlearn`` ran
"""

from __future__ import annotations

__all__ = [
    "AuditCLIError",
    "AuditInputError",
    "ConfigurationError",
    "ForgetCoverageError",
    "ForgetListError",
    "ForgetSetError",
    "InputChangedError",
    "LightlyUnlearnError",
    "ModelSpecError",
    "ModuleCodeError",
    "ModuleContractError",
    "NamespaceMismatchError",
    "NonFiniteLossError",
    "OutputFolderBusyError",
    "OutputPathError",
    "PretrainedWeightsUnavailable",
    "ReceiptError",
    "ResumeMismatchError",
    "SigningKeyError",
    "UnknownComponentError",
    "UnlearnInputError",
    "UntrustedCheckpointError",
]


class LightlyUnlearnError(Exception):
    """Base of every error lightly-unlearn raises on purpose; the message says how to fix it."""


class ConfigurationError(LightlyUnlearnError, ValueError):
    """A setting, argument or input value cannot be used (refused before any work)."""


class ForgetSetError(ConfigurationError):
    """The forget set given by the user cannot be used."""


class ResumeMismatchError(ConfigurationError):
    """A checkpoint was written by a different unlearning run (forget set, method, settings)."""


class OutputPathError(ConfigurationError):
    """An output path would overwrite, or write into, an input (or cannot be written)."""


class ModelSpecError(ConfigurationError):
    """A ``MODEL`` string, its import, or its checkpoint is unusable; the message says why."""


class AuditInputError(ConfigurationError):
    """The data given to an audit cannot produce its metric (missing split, labels, features)."""


class SigningKeyError(ConfigurationError):
    """A signing or public key file cannot be used; the message says why and what to do."""


class UnknownComponentError(ConfigurationError, KeyError):
    """Raised when a method, audit or criterion name resolves to nothing."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ModuleContractError(LightlyUnlearnError, TypeError):
    """The user's module does not expose what an unlearning method or audit needs."""


class NamespaceMismatchError(LightlyUnlearnError, TypeError):
    """A Lightning object of one namespace was given to a trainer (or CLI) of the other."""


class ReceiptError(LightlyUnlearnError, ValueError):
    """A receipt cannot be read, is not a lightly-unlearn receipt, or is malformed."""


class NonFiniteLossError(LightlyUnlearnError, FloatingPointError):
    """The unlearning objective became NaN or infinite; no optimizer step was taken with it."""


class ForgetCoverageError(LightlyUnlearnError, RuntimeError):
    """A training epoch ended without serving every forget sample: the deletion request was not
    acted on for some samples."""


class UntrustedCheckpointError(LightlyUnlearnError, RuntimeError):
    """A checkpoint holds pickled objects that ``weights_only=True`` refuses to load."""


class PretrainedWeightsUnavailable(LightlyUnlearnError, RuntimeError):
    """Pretrained weights were requested that would need a download and are not cached locally."""


class ModuleCodeError(ModelSpecError):
    """A model file runs code beyond definitions when imported (``lightly_unlearn.module_code``)."""


class OutputFolderBusyError(OutputPathError):
    """Another run holds the output folder (or the folder already holds outputs)."""


class ForgetListError(ForgetSetError):
    """The forget list names files that are not images of the folder (or names none)."""


class AuditCLIError(LightlyUnlearnError):
    """Bad input to ``lightly-unlearn audit``; the message says what is wrong and how to fix it."""


class UnlearnInputError(LightlyUnlearnError):
    """Bad input to ``lightly-unlearn unlearn``: refused before any training (exit status 2)."""


class InputChangedError(LightlyUnlearnError):
    """An input file changed after ``lightly-unlearn unlearn`` read it (exit status 1, no outputs)."""
