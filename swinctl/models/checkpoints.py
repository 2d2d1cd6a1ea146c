"""Read Swin Transformer checkpoints of every published layout and convert between them.

Layouts (keys relative to the backbone):

``official``
    Microsoft's code and swinctl's :class:`~swinctl.models.swin.SwinTransformer`: ``patch_embed.proj``,
    ``layers.N.blocks.M.{norm1,attn.qkv,attn.proj,attn.relative_position_bias_table,norm2,mlp.fc1,mlp.fc2}``,
    ``layers.N.downsample.{norm,reduction}`` (end of stage N), ``norm0..3``, ``absolute_pos_embed`` (1, C, H, W).
    ImageNet checkpoints add ``head.*``, a final ``norm`` and persistent buffers, and store ``absolute_pos_embed`` as
    (1, H*W, C); detector/segmentor checkpoints prefix everything with ``backbone.``.
``mmdet``
    MMDet 3.x / MMSeg 1.x: ``patch_embed.projection``, ``stages.N``, ``attn.w_msa.*``, ``ffn.layers.0.0`` /
    ``ffn.layers.1``, ``absolute_pos_embed`` (1, H*W, C), and patch merging built on ``nn.Unfold``, whose 4C input
    channels are ordered (channel, neighbour) with neighbours (x00, x01, x10, x11) instead of the official
    (neighbour, channel) with (x00, x10, x01, x11): ``reduction.weight`` and ``norm.*`` are permuted accordingly.
``timm``
    timm >= 1.0: like official, but the patch merging of official stage N sits at the start of stage N + 1
    (``layers.{N+1}.downsample``); ``features_only`` models name stages ``layers_N``; no output norms.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import gen_relative_position_index

from ..errors import UserError
from ..param_names import mmdet_to_official, official_to_mmdet
from . import safe_load

LAYOUTS = ('official', 'mmdet', 'timm')
TARGETS = ('swinctl', 'mmdet')

# Buffers that older official/timm code saved although they are derived from the window size.
_DERIVED_BUFFERS = ('relative_position_index', 'attn_mask', 'relative_coords_table')
_OFFICIAL_BACKBONE_KEY = re.compile(
    r'^(patch_embed\.(proj|norm)\.(weight|bias)'
    r'|layers\.\d+\.blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)'
    r'|layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table'
    r'|layers\.\d+\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)'
    r'|norm\d+\.(weight|bias)'
    r'|absolute_pos_embed)$'
)
_WRAPPER_PREFIXES = ('module.', '_orig_mod.')  # DistributedDataParallel, torch.compile
# Neighbour order of mmdet's Unfold-based merging expressed in official order: (x00, x01, x10, x11) <-> [0, 2, 1, 3].
_UNFOLD_ORDER = [0, 2, 1, 3]


class CheckpointError(UserError):
    """A file or state dict that is not a readable Swin Transformer checkpoint (message is one line)."""


@dataclass
class ConversionReport:
    """What a conversion found and did."""

    layout: str  # source layout: 'official', 'mmdet' or 'timm'
    source: str  # what kind of checkpoint it was, e.g. 'ImageNet classifier', 'detector/segmentor'
    target: str = 'swinctl'
    num_tensors: int = 0  # backbone tensors written
    dropped_keys: list[str] = field(default_factory=list)
    resized_keys: list[str] = field(default_factory=list)
    passthrough_keys: list[str] = field(default_factory=list)  # non-backbone tensors copied unchanged
    shape: str = 'model'  # what was written: 'model' (backbone.* keys and the rest) or 'backbone' (bare keys)

    def summary(self) -> str:
        target = 'official (swinctl)' if self.target == 'swinctl' else 'MMDet 3.x / MMSeg 1.x'
        keys = 'backbone.* keys of a full model' if self.shape == 'model' else 'bare backbone keys'
        lines = [f'found {self.layout} layout ({self.source}); wrote {self.num_tensors} backbone tensors in {target} '
                 f'layout, as {keys}']
        if self.resized_keys:
            lines.append(f'resized {len(self.resized_keys)}: {_group(self.resized_keys)}')
        if self.dropped_keys:
            lines.append(f'dropped {len(self.dropped_keys)}: {_group(self.dropped_keys)}')
        if self.passthrough_keys:
            lines.append(f'kept {len(self.passthrough_keys)} non-backbone tensors unchanged: '
                         f'{_group(self.passthrough_keys)}')
        return '\n'.join(lines)


def _group(keys: list[str], limit: int = 8) -> str:
    """'layers.*.blocks.*.attn.relative_position_index (12), head.* (2)': digits folded, top-level heads collapsed."""
    counts = Counter(re.sub(r'\.\d+(?=\.|$)', '.*', key) for key in keys)
    parts = [f'{pattern} ({count})' if count > 1 else pattern for pattern, count in counts.most_common(limit)]
    if len(counts) > limit:
        parts.append(f'... {len(counts) - limit} more patterns')
    return ', '.join(parts)


# ----------------------------------------------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load (weights only) or safetensors; every failure becomes a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such file' + (' (a directory)' if path.is_dir() else ''))
    try:
        with path.open('rb') as handle:
            head = handle.read(8)
    except OSError as error:
        raise CheckpointError(f'{path}: cannot read: {error.strerror or error}') from error
    if not head:
        raise CheckpointError(f'{path}: is empty (0 bytes); was it copied completely?')
    if path.suffix == '.safetensors':
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise CheckpointError(f'{path}: reading .safetensors needs the safetensors package') from error
        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own SafetensorError for damaged files
            raise CheckpointError(f'{path}: not a readable safetensors file ({_first_line(error)})') from error
    try:
        with warnings.catch_warnings():  # torch warns of a plain pickle's protocol before it refuses it
            warnings.simplefilter('ignore')
            checkpoint = safe_load.load(path, mmap=head.startswith(b'PK'))  # mmap: a 1 GB file costs no copy
    except Exception as error:
        # a zip checkpoint, a legacy (pre-1.6) one or a bare pickle (whose opcodes torch may refuse before it
        # reaches a global: then the pickle's own opcodes, read without running them, name it)
        refused = None if head.startswith(b'PK') else _foreign_global(path)
        if 'Weights only load failed' in str(error) and ('Unsupported global' in str(error) or refused
                                                         or head.startswith(b'PK')):
            named = re.search(r'Unsupported global: GLOBAL ([\w.]+)', str(error))
            what = (f'Unsupported global {named.group(1)}' if named else f'Unsupported global {refused}' if refused
                    else _first_line(error, 'refused'))
            raise CheckpointError(
                f'{path}: holds Python objects besides tensors that swinctl will not unpickle ({what}); '
                're-save just its state_dict'
            ) from error
        kind = 'a damaged or truncated torch checkpoint' if head.startswith(b'PK') else 'not a torch checkpoint'
        raise CheckpointError(f'{path}: {kind} ({_first_line(error)})') from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict')
    return checkpoint


def check_checkpoint(path: str | Path, role: str = 'model') -> str:
    """Before a job is queued: `path` reads weights-only and holds what `role` needs. Returns a one-line summary.

    role 'model': a full detector/segmentor state dict (`--checkpoint`, `load_from`); 'backbone': Swin backbone
    weights of any layout (a backbone's `pretrained`).
    """
    checkpoint = read_checkpoint(path)
    try:
        tensors, _ = _unwrap(checkpoint)
        backbone, _, source = _split_backbone(tensors)
        layout = _detect(backbone) if role == 'backbone' else None
    except CheckpointError as error:
        raise CheckpointError(f'{path}: {error}') from None
    if role == 'model' and source != 'detector/segmentor':
        raise CheckpointError(f'{path}: holds {len(tensors)} tensors but no backbone.* keys, so it is not a '
                              'detector/segmentor checkpoint; for backbone weights set model.backbone.pretrained')
    return f'{len(tensors)} tensors' + (f', {layout} layout ({source})' if layout else '')


_DATA_MODULES = ('torch', 'collections', 'numpy', 'mmengine', '_codecs')


def _foreign_global(path: Path, limit: int = 1 << 26) -> str | None:
    """The first global a pickle file imports that is not a tensor's or MMEngine's data type (e.g. 'exec'), read
    from its opcodes without unpickling; None for a file that is no pickle or names none."""
    import pickletools

    strings: list[str] = []
    try:
        with path.open('rb') as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                if isinstance(arg, str):
                    strings = (strings + [arg])[-2:]
                if opcode.name == 'GLOBAL':
                    module, _, name = str(arg).partition(' ')
                elif opcode.name == 'STACK_GLOBAL' and len(strings) == 2:
                    module, name = strings
                else:
                    if handle.tell() > limit:
                        return None
                    continue
                if module.split('.')[0] not in _DATA_MODULES:
                    return name if module == 'builtins' else f'{module}.{name}'
    except Exception:  # not a pickle, or a damaged one: torch's own message stands
        return None
    return None


def _first_line(error: BaseException, containing: str | None = None) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if containing:
        lines = [line for line in lines if containing in line] or lines
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 160 else text[:157] + '...'


def _unwrap(checkpoint: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensor dict inside a checkpoint and the container key it came from ('state_dict', 'model' or None)."""
    container = None
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint, container = checkpoint[key], key
            break
    tensors = {key: value for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f'no tensors found (top-level keys: {_preview(checkpoint)})')
    for prefix in _WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix) :]: value for key, value in tensors.items()}
    return tensors, container


def _preview(keys, limit: int = 4) -> str:
    keys = list(keys)
    return ', '.join(keys[:limit]) + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')


def _split_backbone(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """(backbone tensors without prefix, the other tensors, what kind of checkpoint this is)."""
    if any(key.startswith('backbone.') for key in tensors):
        backbone = {key[len('backbone.') :]: value for key, value in tensors.items() if key.startswith('backbone.')}
        others = {key: value for key, value in tensors.items() if not key.startswith('backbone.')}
        return backbone, others, 'detector/segmentor'
    if any(key.startswith('head.') for key in tensors):
        return tensors, {}, 'ImageNet classifier'
    return tensors, {}, 'backbone state dict'


def detect_layout(state_dict: dict[str, Any]) -> str:
    """'official', 'mmdet' or 'timm' for a backbone state dict (a ``backbone.`` prefix or checkpoint wrapper is fine).

    Raises CheckpointError when the tensors are not a Swin Transformer backbone.
    """
    tensors, _ = _unwrap(state_dict)
    backbone, _, _ = _split_backbone(tensors)
    return _detect(backbone)


def _detect(backbone: dict[str, torch.Tensor]) -> str:
    keys = list(backbone)
    if any('cpb_mlp' in key or 'logit_scale' in key for key in keys):
        raise CheckpointError('this is a Swin Transformer V2 checkpoint; swinctl implements Swin V1')
    if any(key.startswith('stages.') or key.startswith('patch_embed.projection.') for key in keys):
        return 'mmdet'
    if any(re.match(r'layers_\d+\.', key) for key in keys):
        return 'timm'
    has_stage_blocks = any(re.match(r'layers\.\d+\.blocks\.\d+\.attn\.', key) for key in keys)
    if has_stage_blocks or 'patch_embed.proj.weight' in backbone:
        # Official stage 0 ends with a merging; timm's stage 0 has none (its merges open stages 1..3).
        downsampled = {int(match.group(1)) for key in keys if (match := re.match(r'layers\.(\d+)\.downsample\.', key))}
        return 'timm' if downsampled and 0 not in downsampled else 'official'
    raise CheckpointError(f'not a Swin Transformer checkpoint (no Swin backbone keys; keys: {_preview(keys)})')


# -------------------------------------------------------------------------------------------------- key conversions


def _unfold_to_official_order(weight: torch.Tensor) -> torch.Tensor:
    """MMDet's (channel, neighbour) input order -> official (neighbour, channel), on the last dim of weight/norm."""
    *lead, channels = weight.shape
    reordered = weight.reshape(*lead, channels // 4, 4).transpose(-1, -2)[..., _UNFOLD_ORDER, :]
    return reordered.reshape(*lead, channels).contiguous()


def _official_to_unfold_order(weight: torch.Tensor) -> torch.Tensor:
    """Inverse of _unfold_to_official_order (as in mmdet's swin_converter ``correct_unfold_*_order``)."""
    *lead, channels = weight.shape
    reordered = weight.reshape(*lead, 4, channels // 4)[..., _UNFOLD_ORDER, :].transpose(-1, -2)
    return reordered.reshape(*lead, channels).contiguous()


def _pos_embed_to_official(value: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
    """(1, H*W, C) -> (1, C, H, W); square grid unless the model's grid is known."""
    if value.ndim == 4:
        return value
    _, length, channels = value.shape
    if grid is None or grid[0] * grid[1] != length:
        side = math.isqrt(length)
        if side * side != length:
            raise CheckpointError(f'absolute_pos_embed has {length} positions, not a square grid; pass the model')
        grid = (side, side)
    return value.transpose(1, 2).reshape(1, channels, *grid).contiguous()


def _timm_key_to_official(key: str) -> str:
    key = re.sub(r'^layers_(\d+)\.', r'layers.\1.', key)
    return re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) - 1}.downsample.', key)


def to_official(
    backbone: dict[str, torch.Tensor], layout: str, grid: tuple[int, int] | None = None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(backbone in official layout, dropped source keys) from a backbone in ``layout``."""
    converted, dropped = {}, []
    for source_key, value in backbone.items():
        if layout == 'mmdet':
            key = mmdet_to_official(source_key)
            if '.downsample.' in key:
                value = _unfold_to_official_order(value)
        elif layout == 'timm':
            key = _timm_key_to_official(source_key)
        else:
            key = source_key
        if key == 'absolute_pos_embed':
            value = _pos_embed_to_official(value, grid)
        if _OFFICIAL_BACKBONE_KEY.match(key):
            converted[key] = value
        else:
            dropped.append(source_key)  # classifier head and final norm, derived buffers, unknown extras
    if not converted:
        raise CheckpointError(f'no Swin backbone tensors found in the {layout} layout')
    return converted, dropped


def from_official(backbone: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """An official-layout backbone in ``layout`` ('official', 'mmdet', or 'timm', which drops ``norm0..3``)."""
    if layout == 'official':
        return dict(backbone)
    converted = {}
    for key, value in backbone.items():
        if layout == 'mmdet':
            if '.downsample.' in key:
                value = _official_to_unfold_order(value)
            if key == 'absolute_pos_embed':
                value = value.flatten(2).transpose(1, 2).contiguous()
            converted[official_to_mmdet(key)] = value
            if key.endswith('attn.relative_position_bias_table'):
                # MMDet saves this derived buffer (persistent there); include it so strict loads succeed.
                window_size = (math.isqrt(value.shape[0]) + 1) // 2
                index_key = official_to_mmdet(key).replace('_bias_table', '_index')
                converted[index_key] = gen_relative_position_index((window_size, window_size))
        elif layout == 'timm':
            if re.match(r'norm\d+\.', key) or key == 'absolute_pos_embed':
                continue  # timm's Swin has no output norms or absolute position embedding
            key = re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) + 1}.downsample.', key)
            converted[key] = value
        else:
            raise ValueError(f'unknown layout {layout!r}; expected one of {LAYOUTS}')
    return converted


def resize_relative_position_bias_table(table: torch.Tensor, window_size: int) -> torch.Tensor:
    """((2w-1)^2, heads) table resampled bicubically to another window size, as the official code does."""
    old_side, heads = math.isqrt(table.shape[0]), table.shape[1]
    new_side = 2 * window_size - 1
    if old_side == new_side:
        return table
    grid = table.T.reshape(1, heads, old_side, old_side).float()
    resized = F.interpolate(grid, size=(new_side, new_side), mode='bicubic', align_corners=False)
    return resized.reshape(heads, new_side * new_side).T.contiguous().to(table.dtype)


def _fit_to_model(
    backbone: dict[str, torch.Tensor], model: torch.nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Resize bias tables and the absolute position embedding to the model's window size / patch grid."""
    targets = model.state_dict()
    resized = []
    for key, value in backbone.items():
        target = targets.get(key)
        if target is None or target.shape == value.shape:
            continue
        if key.endswith('relative_position_bias_table') and target.shape[1] == value.shape[1]:
            backbone[key] = resize_relative_position_bias_table(value, (math.isqrt(target.shape[0]) + 1) // 2)
        elif key == 'absolute_pos_embed' and target.shape[:2] == value.shape[:2]:
            backbone[key] = F.interpolate(value.float(), size=target.shape[-2:], mode='bicubic').to(value.dtype)
        else:
            continue  # a genuine mismatch: load_state_dict reports it
        resized.append(key)
    return backbone, resized


# ------------------------------------------------------------------------------------------------------- public API


def extract_backbone(
    path_or_dict: str | Path | dict[str, Any], model: torch.nn.Module | None = None
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Backbone tensors in the official layout from a checkpoint of any layout, with a report of what was done."""
    checkpoint = read_checkpoint(path_or_dict) if isinstance(path_or_dict, str | Path) else path_or_dict
    tensors, _ = _unwrap(checkpoint)
    backbone, others, source = _split_backbone(tensors)
    layout = _detect(backbone)
    grid = tuple(model.absolute_pos_embed.shape[-2:]) if getattr(model, 'ape', False) else None
    official, dropped = to_official(backbone, layout, grid)
    resized = []
    if model is not None:
        official, resized = _fit_to_model(official, model)
    report = ConversionReport(
        layout=layout,
        source=source,
        num_tensors=len(official),
        dropped_keys=dropped,
        resized_keys=resized,
        passthrough_keys=list(others),
    )
    return official, report


def load_backbone_state_dict(
    path_or_dict: str | Path | dict[str, Any], model: torch.nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Backbone state dict in the official (swinctl) layout, resized to ``model``'s window size when given."""
    return extract_backbone(path_or_dict, model)[0]


SHAPES = ('keep', 'model', 'backbone')


def convert_checkpoint_file(
    src: Path, dst: Path, to: str = 'swinctl', window_size: int | None = None, shape: str = 'keep'
) -> ConversionReport:
    """Convert ``src`` (any layout) to ``dst`` in ``to`` layout: 'swinctl' (official) or 'mmdet' (MMDet3/MMSeg1).

    ``dst`` holds ``{'state_dict': ..., 'meta': ...}``. ``shape`` decides its keys:

    ``keep``
        as the input: a full detector/segmentor checkpoint stays one (``backbone.<key>`` plus its neck/head
        tensors, copied unchanged), backbone weights (an ImageNet classifier's, whose head is dropped, or a bare
        backbone state dict) stay bare backbone keys, as Microsoft's own releases are. Except for ``to='mmdet'``:
        MMDet 3.x / MMSeg 1.x's SwinTransformer keeps only the ``backbone.*`` keys of a pretrained file, so that
        layout always has them.
    ``model``
        ``backbone.<key>`` (plus the input's other tensors), which MMEngine's ``load_from`` and MMDet/MMSeg's own
        Swin accept, even from backbone weights.
    ``backbone``
        bare backbone keys only; the input's other tensors are dropped.

    ``window_size`` resamples the relative position bias tables (e.g. 7 -> 12 for window-12 models).
    """
    if to not in TARGETS:
        raise CheckpointError(f'unknown target layout {to!r}; choose one of {", ".join(TARGETS)}')
    if shape not in SHAPES:
        raise CheckpointError(f'unknown shape {shape!r}; choose one of {", ".join(SHAPES)}')
    if window_size is not None and (not isinstance(window_size, int) or window_size < 1):
        raise CheckpointError(f'window_size must be a positive integer, not {window_size!r}')
    dst = Path(dst)
    _check_destination(Path(src), dst)
    checkpoint = read_checkpoint(src)
    tensors, _ = _unwrap(checkpoint)
    official, report = extract_backbone(checkpoint)
    if window_size is not None:
        for key in [key for key in official if key.endswith('relative_position_bias_table')]:
            resized = resize_relative_position_bias_table(official[key], window_size)
            if resized is not official[key]:
                official[key] = resized
                report.resized_keys.append(key)
    backbone = from_official(official, 'mmdet' if to == 'mmdet' else 'official')
    _, others, source = _split_backbone(tensors)
    if shape == 'keep':
        shape = 'model' if source == 'detector/segmentor' or to == 'mmdet' else 'backbone'
    if shape == 'model':
        state_dict = {f'backbone.{key}': value for key, value in backbone.items()} | others
    else:
        state_dict = dict(backbone)
        report.dropped_keys.extend(others)
        report.passthrough_keys = []
    meta = {'swinctl_layout': 'official' if to == 'swinctl' else 'mmdet', 'swinctl_shape': shape,
            'converted_from': str(src), 'source_layout': report.layout}
    if isinstance(checkpoint.get('meta'), dict):
        meta = checkpoint['meta'] | meta
    report.target = to
    report.shape = shape
    partial = dst.with_name(f'.{dst.name}.{os.getpid()}.partial')  # (two processes may convert the same file)
    try:  # a complete file or none: a full disk or Ctrl-C leaves no half-written checkpoint under dst's name
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.save({'state_dict': state_dict, 'meta': meta}, partial)
        partial.replace(dst)
    except OSError as exc:  # /proc/..., a read-only mount, a full disk: not ours to fix
        partial.unlink(missing_ok=True)
        raise CheckpointError(f'{dst}: cannot write the converted checkpoint there ({exc.strerror or exc}); '
                              'choose another path') from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return report


def _check_destination(src: Path, dst: Path) -> None:
    """Before anything is read: `dst` is a file name swinctl may write, and not `src` itself."""
    if dst.is_dir():
        raise CheckpointError(f'{dst}: is a directory; give the converted checkpoint a file name, e.g. '
                              f'{dst / src.with_suffix("").name}-converted.pth')
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise CheckpointError(f'{dst}: is the source checkpoint; write the conversion to another file')
    parent = next((p for p in [dst.parent, *dst.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CheckpointError(f'{dst}: {parent} is a file, not a directory')
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointError(f'{dst}: {parent} is not writable')
