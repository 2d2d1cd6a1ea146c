"""MMDet's and MMSeg's shipped Swin configs build swinctl's backbone once its type is swapped, and run forward.

This is the seam the recipes rely on: ``custom_imports`` + ``type='swinctl.SwinTransformer'`` resolves through
MMDet's / MMSeg's MODELS registries (children of MMEngine's root) to swinctl's registry, not to the codebase's own
SwinTransformer.
"""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

from swinctl.models import SwinTransformer

IMAGE_HW = (96, 128)  # small, and not a multiple of the 7 * 32 window grid


def shipped_config(package: str, relative: str) -> Config:
    module = pytest.importorskip(package)
    cfg = Config.fromfile(Path(module.__file__).parent / '.mim' / 'configs' / relative)
    cfg.custom_imports = dict(imports=['swinctl.models'], allow_failed_imports=False)
    cfg.model.backbone.type = 'swinctl.SwinTransformer'
    cfg.model.backbone.pop('init_cfg', None)  # the shipped configs download ImageNet weights
    import_modules_from_strings(**cfg.custom_imports)  # what Runner.from_cfg does with custom_imports
    return cfg


def assert_is_ours(backbone) -> None:
    assert type(backbone) is SwinTransformer, type(backbone)
    assert type(backbone).__module__ == 'swinctl.models.swin'


def test_mmdet_mask_rcnn_swin_t_config_builds_our_backbone_and_predicts():
    cfg = shipped_config('mmdet', 'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py')
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample

    model = MODELS.build(cfg.model).eval()
    assert_is_ours(model.backbone)
    assert model.backbone.layers[2].blocks[5].drop_path.drop_prob == pytest.approx(0.2 * 9 / 11)
    height, width = IMAGE_HW
    sample = DetDataSample(metainfo=dict(img_shape=IMAGE_HW, ori_shape=IMAGE_HW, pad_shape=IMAGE_HW,
                                         batch_input_shape=IMAGE_HW, scale_factor=(1.0, 1.0)))
    torch.manual_seed(0)
    with torch.no_grad():
        features = model.extract_feat(torch.randn(1, 3, height, width))
        results = model(torch.randn(1, 3, height, width), [sample], mode='predict')
    assert [tuple(f.shape[-2:]) for f in features] == [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)]
    assert results[0].pred_instances.bboxes.shape[-1] == 4


def test_mmseg_upernet_swin_t_config_builds_our_backbone_and_segments():
    cfg = shipped_config('mmseg', 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')
    init_default_scope('mmseg')
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS

    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()  # SyncBN needs a process group; CPU test
    assert_is_ours(model.backbone)
    torch.manual_seed(0)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, *IMAGE_HW), mode='tensor')
    assert tuple(logits.shape) == (1, 150, IMAGE_HW[0] // 4, IMAGE_HW[1] // 4)
    assert torch.isfinite(logits).all()
