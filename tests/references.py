"""The published config a recipe reproduces, as the installed mmdet / mmseg ship it (shared by the render and
optimizer equivalence tests)."""

from __future__ import annotations

from pathlib import Path

from mim.utils import get_installed_path
from mmengine.config import Config

PACKAGES = {"mmdet": "mmdet", "mmseg": "mmsegmentation"}


def reference_config(recipe) -> Config:
    root = Path(get_installed_path(PACKAGES[recipe.codebase]))
    cfg = Config.fromfile(str(root / ".mim" / "configs" / recipe.reference_config))
    if cfg.model.get("pretrained") and not cfg.model.backbone.get("init_cfg"):
        # mmseg's legacy model.pretrained is the backbone's checkpoint (EncoderDecoder hands it over): compare it
        # where ours states it
        cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=cfg.model.pretrained)
        cfg.model.pretrained = None
    return cfg
