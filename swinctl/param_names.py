"""Swin parameter names in MMDet 3.x / MMSeg 1.x's layout and in the official one that swinctl's backbone uses.

One table serves checkpoint keys (``stages.0.blocks.1.attn.w_msa.qkv.weight``) and the substrings that configs match
parameters by (``paramwise_cfg.custom_keys`` such as ``backbone.stages.0.blocks.1.norm``): a reference config's keys
name mmdet's modules, so they would match nothing in swinctl's backbone and those tensors would fall through to a
broader key with other decay or learning rate. No library maps them (MMDet's own converter only goes official ->
mmdet for state dicts). Pure string work: importing this module needs neither torch nor mmengine.
"""

from __future__ import annotations

import re

# (mmdet pattern, official replacement), in order; every pattern is bounded by dots or the ends of the name.
_MMDET_TO_OFFICIAL = [
    (re.compile(r"(^|backbone\.)stages(?=\.|$)"), r"\1layers"),
    (re.compile(r"(^|\.)patch_embed\.projection(?=\.|$)"), r"\1patch_embed.proj"),
    (re.compile(r"(^|\.)attn\.w_msa(?=\.|$)"), r"\1attn"),
    (re.compile(r"(^|\.)ffn\.layers\.0\.0(?=\.|$)"), r"\1mlp.fc1"),
    (re.compile(r"(^|\.)ffn\.layers\.1(?=\.|$)"), r"\1mlp.fc2"),
    (re.compile(r"(^|\.)ffn(?=\.|$)"), r"\1mlp"),
]
_OFFICIAL_TO_MMDET = [
    (re.compile(r"(^|backbone\.)layers(?=\.|$)"), r"\1stages"),
    (re.compile(r"(^|\.)patch_embed\.proj(?=\.|$)"), r"\1patch_embed.projection"),
    (re.compile(r"(^|\.)attn(?=\.)"), r"\1attn.w_msa"),
    (re.compile(r"(^|\.)mlp\.fc1(?=\.|$)"), r"\1ffn.layers.0.0"),
    (re.compile(r"(^|\.)mlp\.fc2(?=\.|$)"), r"\1ffn.layers.1"),
]


def _apply(rules: list[tuple[re.Pattern, str]], name: str) -> str:
    for pattern, replacement in rules:
        name = pattern.sub(replacement, name)
    return name


def mmdet_to_official(name: str) -> str:
    """A backbone-relative or ``backbone.``-prefixed name (or substring of one) in official/swinctl naming."""
    return _apply(_MMDET_TO_OFFICIAL, name)


def official_to_mmdet(name: str) -> str:
    """The inverse of :func:`mmdet_to_official` for whole backbone-relative parameter names."""
    return _apply(_OFFICIAL_TO_MMDET, name)


def translate_custom_keys(custom_keys: dict) -> dict:
    """``paramwise_cfg.custom_keys`` with mmdet-named backbone keys renamed to swinctl's names, in their order.

    MMEngine matches a key as a substring of ``<module path>.<parameter name>``, longest key first: the renamed keys
    select the same tensors in swinctl's backbone as the originals in mmdet's (``stages`` and ``layers`` have the
    same length, so the order among matching keys is kept too). Keys naming other modules are left as they are.
    """
    out: dict = {}
    for key, value in custom_keys.items():
        renamed = mmdet_to_official(key) if key.startswith(("backbone.", "stages.")) else key
        if renamed in out and out[renamed] != value:
            raise ValueError(f"paramwise_cfg.custom_keys: '{key}' is '{renamed}' in swinctl's backbone, which is "
                             f"set to {out[renamed]!r} already; keep one of them")
        out[renamed] = value
    return out
