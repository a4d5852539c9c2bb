"""CLIP (open_clip) support: ``CLIPModule``, offline loading, caption datasets and forget-set helpers."""

from lightly_unlearn.clip.data import (
    DIGIT_NAMES,
    DIGIT_TEMPLATES,
    CaptionDataset,
    forget_by_class,
    forget_by_concept,
    tiny_clip_kwargs,
)
from lightly_unlearn.clip.loading import (
    create_clip,
    create_tokenizer,
    load_clip_weights,
    resolve_pretrained,
)
from lightly_unlearn.clip.module import CLIPModule, PLCLIPModule, init_open_clip_parameters
from lightly_unlearn.deprecation import moved_names

# errors live in lightly_unlearn.errors only
__getattr__ = moved_names(__name__, {"PretrainedWeightsUnavailable": "lightly_unlearn.errors"})

__all__ = [
    "CLIPModule",
    "CaptionDataset",
    "PLCLIPModule",
    "DIGIT_NAMES",
    "DIGIT_TEMPLATES",
    "create_clip",
    "create_tokenizer",
    "forget_by_class",
    "forget_by_concept",
    "init_open_clip_parameters",
    "load_clip_weights",
    "resolve_pretrained",
    "tiny_clip_kwargs",
]
