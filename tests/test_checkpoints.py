"""Checkpoint layouts: detection, conversion both ways, resizing, loading, and clear errors for files that are not Swin.

Official-layout files are built from a real model's state dict with the extras the released files carry (classifier
head, final norm, persistent buffers, (1, L, C) position embedding, ``model``/``state_dict`` containers); MMDet and
timm files come from the real MMDet / timm models. Nothing is downloaded.
"""

import argparse

import pytest
import torch
from mmengine.config import ConfigDict

from swinctl.models import SwinTransformer
from swinctl.models.checkpoints import (
    CheckpointError,
    ConversionReport,
    convert_checkpoint_file,
    detect_layout,
    extract_backbone,
    from_official,
    load_backbone_state_dict,
    resize_relative_position_bias_table,
)

DEPTHS = (2, 2, 2, 2)


@pytest.fixture(scope='module')
def model() -> SwinTransformer:
    torch.manual_seed(0)
    return SwinTransformer(depths=DEPTHS, drop_path_rate=0.0, ape=True)


@pytest.fixture(scope='module')
def official(model) -> dict[str, torch.Tensor]:
    return model.state_dict()


def imagenet_checkpoint(official: dict[str, torch.Tensor]) -> dict:
    """What microsoft/Swin-Transformer releases: {'model': ...} with head, final norm and persistent buffers."""
    state = {key: value for key, value in official.items() if not key.startswith('norm')}
    if 'absolute_pos_embed' in official:
        state['absolute_pos_embed'] = official['absolute_pos_embed'].flatten(2).transpose(1, 2)
    state |= {'norm.weight': torch.ones(768), 'norm.bias': torch.zeros(768),
              'head.weight': torch.randn(1000, 768), 'head.bias': torch.zeros(1000),
              'layers.0.blocks.0.attn.relative_position_index': torch.zeros(49, 49, dtype=torch.long),
              'layers.0.blocks.1.attn_mask': torch.zeros(64, 49, 49)}
    return {'model': state}


def detector_checkpoint(backbone: dict[str, torch.Tensor]) -> dict:
    """What a detector training saves: backbone under 'backbone.' next to neck/head tensors, plus meta."""
    state = {f'backbone.{key}': value for key, value in backbone.items()}
    state |= {'neck.lateral_convs.0.conv.weight': torch.randn(256, 96, 1, 1),
              'rpn_head.rpn_conv.bias': torch.zeros(256)}
    return {'meta': {'epoch': 12, 'dataset_meta': {'classes': ('person',)}}, 'state_dict': state}


def assert_same(converted: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert converted.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(converted[key], value), key


# ------------------------------------------------------------------------------------------------------- detection


def test_detects_official_layouts(official):
    assert detect_layout(official) == 'official'
    assert detect_layout(imagenet_checkpoint(official)) == 'official'
    assert detect_layout(detector_checkpoint(official)) == 'official'
    assert detect_layout({'module.' + key: value for key, value in official.items()}) == 'official'


def test_detects_mmdet_layout_from_the_real_mmdet_model():
    mmdet_backbones = pytest.importorskip('mmdet.models.backbones')
    mmdet_state = mmdet_backbones.SwinTransformer(depths=DEPTHS).state_dict()
    assert detect_layout(mmdet_state) == 'mmdet'
    assert detect_layout(detector_checkpoint(mmdet_state)) == 'mmdet'


def test_detects_timm_layouts_from_real_timm_models():
    timm = pytest.importorskip('timm')
    full = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False)
    features = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, features_only=True)
    assert detect_layout(full.state_dict()) == 'timm'
    assert detect_layout(features.state_dict()) == 'timm'
    backbone, report = extract_backbone(full.state_dict(), SwinTransformer())
    assert report.layout == 'timm'
    assert set(report.dropped_keys) == {'norm.weight', 'norm.bias', 'head.fc.weight', 'head.fc.bias'}
    missing, unexpected = SwinTransformer().load_state_dict(backbone, strict=False)
    assert not unexpected and sorted(missing) == sorted(f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert torch.equal(backbone['layers.2.downsample.reduction.weight'],
                       full.state_dict()['layers.3.downsample.reduction.weight'])


# ------------------------------------------------------------------------------------------------------ conversion


def test_imagenet_checkpoint_loads_with_no_missing_or_unexpected_backbone_keys(official, model):
    backbone, report = extract_backbone(imagenet_checkpoint(official), model)
    assert (report.layout, report.source) == ('official', 'ImageNet classifier')
    assert {'head.weight', 'norm.bias', 'layers.0.blocks.1.attn_mask'} <= set(report.dropped_keys)
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    assert not unexpected and all(key.startswith('norm') for key in missing)  # output norms are new in detection
    assert torch.equal(backbone['absolute_pos_embed'], official['absolute_pos_embed'])  # (1, L, C) -> (1, C, H, W)


@pytest.mark.parametrize('layout', ['mmdet', 'timm'])
def test_round_trips_are_exact(official, layout):
    converted = from_official(official, layout)
    back, dropped = extract_backbone(converted)[0], extract_backbone(converted)[1].dropped_keys
    expected = official if layout == 'mmdet' else {
        key: value for key, value in official.items() if not key.startswith('norm') and key != 'absolute_pos_embed'}
    assert_same(back, expected)
    assert all(key.endswith('relative_position_index') for key in dropped)  # derived buffers MMDet saves
    if layout == 'mmdet':
        assert_same(from_official(back, 'mmdet'), converted)


def test_patch_merging_permutation_matches_mmdets_own_converter(official):
    """Our official -> MMDet conversion agrees with mmdet's shipped swin_converter tensor for tensor."""
    mmdet_swin = pytest.importorskip('mmdet.models.backbones.swin')
    theirs = {key.removeprefix('backbone.'): value for key, value in mmdet_swin.swin_converter(official).items()}
    ours = from_official(official, 'mmdet')
    assert_same({key: value for key, value in ours.items() if 'relative_position_index' not in key},
                theirs | {'absolute_pos_embed': ours['absolute_pos_embed']})  # mmdet's keeps (1, C, H, W) as is


def test_mmdet_layout_carries_mmdets_own_relative_position_index(official):
    mmdet_backbones = pytest.importorskip('mmdet.models.backbones')
    theirs = mmdet_backbones.SwinTransformer(depths=DEPTHS, use_abs_pos_embed=True).state_dict()
    ours = from_official(official, 'mmdet')
    assert ours.keys() == theirs.keys()
    for key in [key for key in theirs if key.endswith('relative_position_index')]:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.parametrize('target', ['swinctl', 'mmdet'])
def test_convert_file_keeps_detector_heads_and_round_trips(tmp_path, official, target):
    source = tmp_path / 'detector.pth'
    torch.save(detector_checkpoint(official), source)
    report = convert_checkpoint_file(source, tmp_path / 'out.pth', to=target)
    assert isinstance(report, ConversionReport)
    assert (report.layout, report.source, report.num_tensors) == ('official', 'detector/segmentor', len(official))
    assert len(report.passthrough_keys) == 2 and 'kept 2 non-backbone tensors' in report.summary()
    written = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert written['meta']['epoch'] == 12 and written['meta']['swinctl_layout'] in ('official', 'mmdet')
    assert 'neck.lateral_convs.0.conv.weight' in written['state_dict']
    assert detect_layout(written) == ('mmdet' if target == 'mmdet' else 'official')
    back = convert_checkpoint_file(tmp_path / 'out.pth', tmp_path / 'back.pth', to='swinctl')
    assert back.layout == ('mmdet' if target == 'mmdet' else 'official')
    assert_same(load_backbone_state_dict(tmp_path / 'back.pth'), official)


def test_mmdet_file_loads_into_mmdets_own_swin_without_missing_keys(tmp_path, official):
    """A file converted to='mmdet' is what MMDet's SwinTransformer (convert_weights=False) loads as pretrained."""
    mmdet_backbones = pytest.importorskip('mmdet.models.backbones')
    # MMDet's init_weights cannot load an absolute position embedding at all (it reads its (1, L, C) as 4-D).
    official = {key: value for key, value in official.items() if key != 'absolute_pos_embed'}
    torch.save(imagenet_checkpoint(official), tmp_path / 'imagenet.pth')
    convert_checkpoint_file(tmp_path / 'imagenet.pth', tmp_path / 'mmdet.pth', to='mmdet')
    init_cfg = ConfigDict(type='Pretrained', checkpoint=str(tmp_path / 'mmdet.pth'))  # as a config file gives it
    theirs = mmdet_backbones.SwinTransformer(depths=DEPTHS, init_cfg=init_cfg)
    theirs.init_weights()
    loaded = {key: value for key, value in theirs.state_dict().items() if not key.startswith('norm')}
    expected = from_official(official, 'mmdet')
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize('make', ['imagenet', 'mmdet', 'timm'])
def test_init_cfg_pretrained_loads_every_layout(tmp_path, official, make, caplog):
    if make == 'imagenet':
        checkpoint = imagenet_checkpoint(official)
    elif make == 'mmdet':
        checkpoint = detector_checkpoint(from_official(official, 'mmdet'))
    else:
        checkpoint = {'state_dict': from_official(official, 'timm')}
    torch.save(checkpoint, tmp_path / 'pretrained.pth')
    init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'pretrained.pth'))
    model = SwinTransformer(depths=DEPTHS, ape=True, init_cfg=init_cfg)
    missing, unexpected = model.load_pretrained(str(tmp_path / 'pretrained.pth'))
    assert not unexpected
    assert all(key.startswith('norm') or key == 'absolute_pos_embed' for key in missing)
    model.init_weights()
    assert torch.equal(model.layers[1].downsample.reduction.weight, official['layers.1.downsample.reduction.weight'])


def test_window_size_resize_7_to_12(tmp_path, official):
    table = official['layers.0.blocks.0.attn.relative_position_bias_table']
    resized = resize_relative_position_bias_table(table, 12)
    assert resized.shape == (23 * 23, 3)
    # Bicubic resampling of a constant table stays constant: a cheap check that rows/heads are not scrambled.
    assert torch.allclose(resize_relative_position_bias_table(torch.full((169, 3), 2.5), 12), torch.tensor(2.5))
    target = SwinTransformer(depths=DEPTHS, window_size=12, ape=True)
    backbone, report = extract_backbone(imagenet_checkpoint(official), target)
    assert len(report.resized_keys) == sum(DEPTHS)
    assert target.load_state_dict(backbone, strict=False).unexpected_keys == []
    torch.save(imagenet_checkpoint(official), tmp_path / 'w7.pth')
    report = convert_checkpoint_file(tmp_path / 'w7.pth', tmp_path / 'w12.pth', window_size=12)
    assert len(report.resized_keys) == sum(DEPTHS) and 'resized 8' in report.summary()


# ---------------------------------------------------------------------------------------------------------- errors


def test_corrupt_file_gives_one_line_error(tmp_path, official):
    torch.save({'state_dict': official}, tmp_path / 'good.pth')
    data = (tmp_path / 'good.pth').read_bytes()
    (tmp_path / 'truncated.pth').write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='damaged or truncated') as error:
        convert_checkpoint_file(tmp_path / 'truncated.pth', tmp_path / 'out.pth')
    assert '\n' not in str(error.value)


def test_text_file_gives_one_line_error(tmp_path):
    (tmp_path / 'notes.pth').write_text('these are not weights\n')
    with pytest.raises(CheckpointError, match='not a torch checkpoint') as error:
        convert_checkpoint_file(tmp_path / 'notes.pth', tmp_path / 'out.pth')
    assert '\n' not in str(error.value)


def test_foreign_checkpoint_resnet_is_rejected(tmp_path):
    torchvision = pytest.importorskip('torchvision')
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / 'resnet18.pth')
    with pytest.raises(CheckpointError, match='not a Swin Transformer checkpoint.*conv1.weight'):
        convert_checkpoint_file(tmp_path / 'resnet18.pth', tmp_path / 'out.pth')


def test_missing_file_and_unknown_target(tmp_path, official):
    with pytest.raises(CheckpointError, match='no such file'):
        convert_checkpoint_file(tmp_path / 'absent.pth', tmp_path / 'out.pth')
    torch.save(official, tmp_path / 'ok.pth')
    with pytest.raises(CheckpointError, match='unknown target'):
        convert_checkpoint_file(tmp_path / 'ok.pth', tmp_path / 'out.pth', to='timm')


def test_pickled_objects_are_refused_not_executed(tmp_path, official):
    # Old training scripts saved their argparse namespace next to the weights; unpickling runs arbitrary code.
    torch.save({'state_dict': official, 'args': argparse.Namespace(lr=0.1)}, tmp_path / 'p.pth')
    with pytest.raises(CheckpointError, match='Python objects besides tensors'):
        convert_checkpoint_file(tmp_path / 'p.pth', tmp_path / 'out.pth')


def test_swin_v2_is_named_as_unsupported():
    with pytest.raises(CheckpointError, match='V2'):
        detect_layout({'layers.0.blocks.0.attn.cpb_mlp.0.weight': torch.zeros(1),
                       'patch_embed.proj.weight': torch.zeros(1)})
