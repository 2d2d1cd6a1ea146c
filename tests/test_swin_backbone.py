"""swinctl's Swin Transformer against the real MMDet 3.x and timm implementations, given the same random weights.

Weights move between the implementations only through swinctl.models.checkpoints, so these tests also prove the
converters. Nothing is downloaded (timm models use pretrained=False).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import swinctl.models
from swinctl.models import MODELS, SwinTransformer
from swinctl.models.checkpoints import from_official, load_backbone_state_dict

TOLERANCE = 1e-4
SMALL_DEPTHS = (2, 2, 2, 2)  # every stage keeps a regular and a shifted block; a quarter of Swin-T's compute


def random_swin(**kwargs) -> SwinTransformer:
    """A backbone whose every parameter (norms and bias tables too) is random, so no mistake can hide in a zero."""
    torch.manual_seed(0)
    model = SwinTransformer(drop_path_rate=0.0, **kwargs)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.05 if param.ndim > 1 else 0.5).add_(1.0 if param.ndim == 1 else 0.0)
    return model


def mmdet_swin(ours: SwinTransformer, training: bool, **kwargs):
    """MMDet 3.x's own SwinTransformer holding ``ours``'s weights, in the same train/eval mode."""
    from mmdet.models.backbones import SwinTransformer as MMDetSwinTransformer

    theirs = MMDetSwinTransformer(drop_path_rate=0.0, **kwargs)
    theirs.load_state_dict(from_official(ours.state_dict(), 'mmdet'), strict=True)
    theirs.train(training)  # MMDet's train() returns None, so no chaining
    ours.train(training)
    return theirs


def max_abs_diffs(outputs, references) -> list[float]:
    assert len(outputs) == len(references)
    for output, reference in zip(outputs, references, strict=True):
        assert output.shape == reference.shape
    return [(output - reference).abs().max().item() for output, reference in zip(outputs, references, strict=True)]


# ------------------------------------------------------------------------------------------------- structure, API


def test_state_dict_uses_official_keys_and_no_buffers():
    keys = set(SwinTransformer(arch='tiny').state_dict())
    assert {'patch_embed.proj.weight', 'patch_embed.norm.weight', 'layers.0.blocks.1.attn.qkv.weight',
            'layers.0.blocks.1.attn.relative_position_bias_table', 'layers.2.blocks.5.mlp.fc2.bias',
            'layers.0.downsample.reduction.weight', 'layers.2.downsample.norm.bias', 'norm3.weight'} <= keys
    assert not any('relative_position_index' in key or 'attn_mask' in key for key in keys)
    assert not any(key.startswith('layers.3.downsample') for key in keys)
    assert sum(p.numel() for p in SwinTransformer(arch='tiny').parameters()) == 27_520_698  # Swin-T minus its head


@pytest.mark.parametrize(
    ('arch', 'window_size', 'embed_dims', 'depth_2'),
    [('tiny', 7, 96, 6), ('small', 7, 96, 18), ('base', 12, 128, 18), ('large', 7, 192, 18)],
)
def test_arch_shortcut_and_explicit_override(arch, window_size, embed_dims, depth_2):
    with torch.device('meta'):  # shapes only: skips allocating and initialising up to 197M parameters
        model = SwinTransformer(arch=arch, window_size=window_size)
    assert (model.embed_dims, model.depths[2], model.window_size) == (embed_dims, depth_2, window_size)
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.shape[0] == (2 * window_size - 1) ** 2
    assert SwinTransformer(arch=arch, embed_dims=64, depths=(1, 1, 1, 1)).num_features == (64, 128, 256, 512)


def test_any_input_size_and_out_indices():
    model = SwinTransformer(depths=SMALL_DEPTHS, out_indices=(1, 3), window_size=12).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 99, 61))
    assert [tuple(out.shape) for out in outputs] == [(1, 192, 13, 8), (1, 768, 4, 2)]
    assert set(model.state_dict()) >= {'norm1.weight', 'norm3.weight'}
    assert 'norm0.weight' not in model.state_dict()


def test_mmdet_config_kwargs_are_accepted():
    # The backbone dicts of mmdet's mask-rcnn_swin-t and mmseg's upernet_swin configs, verbatim but for the type.
    mmdet_kwargs = dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4,
                        qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.2,
                        patch_norm=True, out_indices=(0, 1, 2, 3), with_cp=False, convert_weights=True)
    mmseg_kwargs = dict(pretrain_img_size=224, embed_dims=96, patch_size=4, window_size=7, mlp_ratio=4,
                        depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], strides=(4, 2, 2, 2), out_indices=(0, 1, 2, 3),
                        qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.3,
                        use_abs_pos_embed=False, act_cfg=dict(type='GELU'),
                        norm_cfg=dict(type='LN', requires_grad=True))
    for kwargs in (mmdet_kwargs, mmseg_kwargs):
        assert isinstance(MODELS.build(dict(type='swinctl.SwinTransformer', **kwargs)), SwinTransformer)
    with pytest.raises(ValueError, match='act_cfg'):
        SwinTransformer(act_cfg=dict(type='ReLU'))


def test_registered_in_swinctl_scope_of_mmengine_root_registry():
    from mmengine.registry import MODELS as ROOT

    assert MODELS.scope == 'swinctl' and MODELS.parent is ROOT
    assert type(ROOT.build(dict(type='swinctl.SwinTransformer', depths=SMALL_DEPTHS))) is SwinTransformer


def test_importing_models_needs_only_torch_mmengine_and_timm():
    code = ('import sys, swinctl.models; '
            'print(sorted({m.split(".")[0] for m in sys.modules} & {"mmdet", "mmseg", "mmcv"}))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'


def test_models_modules_import_each_other_without_cycles():
    """Function-level imports count too: a cycle through one breaks as soon as someone moves it to the top."""
    package = Path(swinctl.models.__file__).parent
    imports = {}
    for path in package.glob('*.py'):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('swinctl.models.'):
                names.add(node.module.split('.')[2])
        imports[path.stem] = names & {p.stem for p in package.glob('*.py')} - {'__init__'}
    assert imports['swin'] >= {'checkpoints'} and not imports['checkpoints'] & {'swin'}

    def reaches(start, seen=()):
        return any(target in seen or reaches(target, (*seen, target)) for target in imports[start])

    assert not [name for name in imports if reaches(name, (name,))], imports


def test_frozen_stages_follow_mmdet():
    model = SwinTransformer(depths=SMALL_DEPTHS, frozen_stages=1).train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.layers[0].parameters())
    assert not any(p.requires_grad for p in model.norm0.parameters())
    assert all(p.requires_grad for p in model.layers[1].parameters())
    assert not model.layers[0].training and model.layers[1].training


def test_absolute_position_embedding_follows_input_size():
    model = random_swin(depths=SMALL_DEPTHS, ape=True, pretrain_img_size=224)
    assert model.absolute_pos_embed.shape == (1, 96, 56, 56)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 160, 96))[0].shape == (1, 96, 40, 24)


def test_activation_checkpointing_gives_identical_outputs_and_gradients():
    image = torch.randn(1, 3, 96, 128)
    grads = []
    for with_cp in (False, True):
        model = random_swin(depths=SMALL_DEPTHS, with_cp=with_cp).train()
        image_grad = image.clone().requires_grad_()
        sum(out.square().mean() for out in model(image_grad)).backward()
        grads.append((image_grad.grad, model.layers[1].blocks[1].attn.relative_position_bias_table.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


# ------------------------------------------------------------------------------------------------- parity: MMDet


@pytest.mark.parametrize(
    ('size', 'depths'),
    [((224, 224), (2, 2, 6, 2)), ((512, 512), SMALL_DEPTHS), ((225, 257), (2, 2, 6, 2)), ((97, 130), SMALL_DEPTHS)],
    ids=['224', '512', '225x257', '97x130-batch2'],
)
def test_matches_mmdet_eval(size, depths):
    pytest.importorskip('mmdet')
    ours = random_swin(depths=depths)
    theirs = mmdet_swin(ours, training=False, depths=depths)
    image = torch.randn(2 if size == (97, 130) else 1, 3, *size)
    with torch.no_grad():
        diffs = max_abs_diffs(ours(image), theirs(image))
    assert max(diffs) < TOLERANCE, diffs


@pytest.mark.parametrize(('batch', 'size'), [(1, (224, 224)), (2, (225, 257))], ids=['224', '225x257-batch2'])
def test_matches_mmdet_train_with_gradients(batch, size):
    """Train mode (dropout and drop path 0): same outputs, and the same gradients for the input and every weight."""
    pytest.importorskip('mmdet')
    ours = random_swin(depths=SMALL_DEPTHS)
    theirs = mmdet_swin(ours, training=True, depths=SMALL_DEPTHS)
    image = torch.randn(batch, 3, *size)
    projection = [torch.randn(1, channels, 1, 1) for channels in ours.num_features]
    input_grads, outputs = [], []
    for model in (ours, theirs):
        image_grad = image.clone().requires_grad_()
        out = model(image_grad)
        sum((o * p).mean() for o, p in zip(out, projection, strict=True)).backward()
        input_grads.append(image_grad.grad)
        outputs.append(out)
    assert max(max_abs_diffs(outputs[0], outputs[1])) < TOLERANCE
    assert (input_grads[0] - input_grads[1]).abs().max() < TOLERANCE
    # MMDet's gradients, renamed (and merging gradients permuted) like weights, by the same converter.
    their_grads = load_backbone_state_dict({name: p.grad for name, p in theirs.named_parameters()})
    for name, param in ours.named_parameters():
        assert (param.grad - their_grads[name]).abs().max() < TOLERANCE, name


def test_matches_mmdet_with_absolute_position_embedding():
    pytest.importorskip('mmdet')
    ours = random_swin(depths=SMALL_DEPTHS, ape=True, pretrain_img_size=224)
    theirs = mmdet_swin(ours, training=False, depths=SMALL_DEPTHS, use_abs_pos_embed=True, pretrain_img_size=224)
    image = torch.randn(1, 3, 224, 224)  # MMDet adds its embedding unresized, so only at the pretraining size
    with torch.no_grad():
        assert max(max_abs_diffs(ours(image), theirs(image))) < TOLERANCE


# --------------------------------------------------------------------------------------------------- parity: timm


@pytest.mark.parametrize(
    ('size', 'timm_kwargs'),
    [(224, dict(always_partition=True)), (448, {})],
    ids=['224-always-partition', '448'],
)
def test_matches_timm_features(size, timm_kwargs):
    """timm's stage outputs (no output norm) through our norm0..3 equal ours.

    At 224 the last stage is 7x7: timm by default then skips the shift (as the official *classification* code does),
    whereas the official detection code, MMDet and swinctl always shift, hence always_partition=True there.
    """
    timm = pytest.importorskip('timm')
    ours = random_swin().eval()
    theirs = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False, features_only=True, img_size=size,
                               **timm_kwargs).eval()
    timm_state = {key.replace('layers.', 'layers_', 1): value
                  for key, value in from_official(ours.state_dict(), 'timm').items()}
    theirs.load_state_dict(timm_state, strict=True)
    image = torch.randn(1, 3, size, size)
    with torch.no_grad():
        features = theirs(image)
        if features[0].shape[-1] != 96:  # NCHW in some timm versions
            features = [f.permute(0, 2, 3, 1) for f in features]
        normed = [getattr(ours, f'norm{i}')(f).permute(0, 3, 1, 2) for i, f in enumerate(features)]
        diffs = max_abs_diffs(ours(image), normed)
    assert max(diffs) < TOLERANCE, diffs


def test_window_index_cache_is_bounded():
    from swinctl.models.swin import WINDOW_CACHE_SIZE

    stage = SwinTransformer(depths=SMALL_DEPTHS).layers[3]
    for size in range(1, WINDOW_CACHE_SIZE + 6):
        stage.window_setup(torch.empty(1, size, 2 * size, 768), shift=3)
    assert len(stage._window_cache) == WINDOW_CACHE_SIZE


def test_autocast_mixed_precision_forward_and_backward():
    """Mixed-precision recipes (MMDet's amp configs) run the projections in half precision, the parameters in fp32."""
    model = random_swin(depths=SMALL_DEPTHS).train()
    image = torch.randn(2, 3, 97, 130)  # padded at every stage, so the padding-bias path runs in bfloat16
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outputs = model(image)
    sum(out.float().mean() for out in outputs).backward()
    assert all(param.grad is not None and param.grad.dtype == torch.float32 for param in model.parameters())
    with torch.no_grad():
        reference = model(image)
    assert max(max_abs_diffs([out.float() for out in outputs], reference)) < 0.25  # bfloat16 has 8 mantissa bits
