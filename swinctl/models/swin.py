"""Swin Transformer backbone (Liu et al. 2021) shared by swinctl's MMDetection and MMSegmentation recipes.

Parameter names follow Microsoft's official detection/segmentation code (``patch_embed.proj``, ``layers.N.blocks.M``,
``layers.N.downsample``, ``norm0..3``), so official checkpoints load without renaming; the other published layouts
(MMDet 3.x / MMSeg 1.x, timm) are converted by :mod:`swinctl.models.checkpoints`.

The numerics follow the official detection code (and MMDet/MMSeg, which copy it): inputs of any size are padded on the
right/bottom to window multiples, every second block shifts its windows even when the feature map is no larger than a
window, and shifted windows mask attention between regions that the cyclic shift brought together with -100.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.layers import DropPath, Mlp, gen_relative_position_index, to_2tuple, trunc_normal_
from torch import nn

from .checkpoints import load_backbone_state_dict

ARCH_SETTINGS: dict[str, dict] = {
    'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}

# Input sizes (x 2 shifts) whose window indices each stage keeps.
WINDOW_CACHE_SIZE = 16

# Additive attention logit for token pairs that a cyclic shift made adjacent; the official code uses -100, not -inf.
SHIFTED_WINDOW_MASK_VALUE = -100.0


def shifted_window_mask(padded_hw: tuple[int, int], window_size: int, shift_size: int) -> torch.Tensor:
    """(num_windows, N, N) additive mask: 0 within a region of the cyclically shifted map, -100 across regions."""
    height, width = padded_hw
    region = torch.zeros(height, width)
    edges = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    for label, (rows, cols) in enumerate((r, c) for r in edges for c in edges):
        region[rows, cols] = label
    region = region.view(height // window_size, window_size, width // window_size, window_size)
    region = region.transpose(1, 2).reshape(-1, window_size * window_size)
    different = region[:, None, :] != region[:, :, None]
    return torch.zeros(different.shape).masked_fill_(different, SHIFTED_WINDOW_MASK_VALUE)


def _gather_rows(src: torch.Tensor, index: torch.Tensor, zero_rows: torch.Tensor | None) -> torch.Tensor:
    out = src.index_select(0, index)
    return out.index_fill_(0, zero_rows, 0) if zero_rows is not None else out


class WindowLayout:
    """Row indices between a (B*H*W, ...) token map and per-window, per-head (B*num_windows*heads, N, head_dim) blocks.

    Window slot (image, window, token) holds the map position that padding the map to window multiples and rolling it
    by -shift (the official order of operations) puts there. One row gather thus does padding, cyclic shift, window
    partition and the head split, and a second one undoes them all, instead of a copy for each step.
    """

    def __init__(self, batch: int, height: int, width: int, window_size: int, shift: int, heads: int, device):
        ws = window_size
        padded_h, padded_w = math.ceil(height / ws) * ws, math.ceil(width / ws) * ws
        self.tokens_per_window = ws * ws
        self.batch_windows = batch * (padded_h // ws) * (padded_w // ws)
        # Padded-map position of every slot of one image: rolled row r came from row (r + shift) % padded_h.
        rows = ((torch.arange(padded_h) + shift) % padded_h).view(-1, 1, ws, 1).expand(-1, padded_w // ws, -1, ws)
        cols = ((torch.arange(padded_w) + shift) % padded_w).view(1, -1, 1, ws).expand(padded_h // ws, -1, ws, -1)
        # Slot order: image, window row, window col, token row, token col.
        rows, cols = rows.reshape(-1).repeat(batch), cols.reshape(-1).repeat(batch)
        valid = ((rows < height) & (cols < width)).view(self.batch_windows, 1, -1)
        image = torch.arange(batch).repeat_interleave(rows.numel() // batch)
        source = torch.where(valid.view(-1), image * height * width + rows * width + cols, 0).view(valid.shape)
        head = torch.arange(heads).view(1, -1, 1)
        blocks = torch.arange(self.batch_windows * heads * self.tokens_per_window).view(self.batch_windows, heads, -1)
        valid = valid.expand_as(blocks)
        map_rows = source * heads + head  # row of (token, head) in the map viewed as (B*H*W*heads, head_dim)

        # Map -> windows for q, k and v at once: block row (j, window, head, token) <- map row (token, j, head).
        part = torch.arange(3).view(3, 1, 1, 1)
        qkv_source = (source.unsqueeze(0) * 3 + part) * heads + head  # (3, B*nW, heads, N)
        qkv_blocks = torch.arange(qkv_source.numel()).view(qkv_source.shape)
        qkv_valid = valid.unsqueeze(0).expand_as(qkv_source)
        self.qkv_index = qkv_source.reshape(-1).to(device)
        self.qkv_inverse = _inverse(qkv_source[qkv_valid], qkv_blocks[qkv_valid], device)
        self.qkv_pad_rows = qkv_blocks[~qkv_valid].to(device)
        self.qkv_pad_bias_rows = (part * heads + head).expand_as(qkv_source)[~qkv_valid].to(device)

        # Windows -> map for the attention output: map row (token, head) <- block row (window, head, token).
        self.merge_index = _inverse(map_rows[valid], blocks[valid], device)
        self.merge_grad_index = map_rows.reshape(-1).to(device)
        self.merge_grad_pad_rows = blocks[~valid].to(device) if not valid.all() else None

    def merge(self, blocks: torch.Tensor) -> torch.Tensor:
        """(B*num_windows*heads, N, head_dim) -> (B*H*W*heads, head_dim); padding slots are dropped."""
        return _GatherRows.apply(blocks.view(-1, blocks.shape[-1]), self.merge_index, self.merge_grad_index,
                                 self.merge_grad_pad_rows)


def _inverse(positions: torch.Tensor, values: torch.Tensor, device) -> torch.Tensor:
    inverse = torch.empty(positions.numel(), dtype=torch.long)
    inverse[positions] = values
    return inverse.to(device)


class _GatherRows(torch.autograd.Function):
    """``src[index]``; backward gathers with the inverse index (a permutation up to padding rows, which get zero)."""

    @staticmethod
    def forward(ctx, src, index, grad_index, grad_zero_rows):
        ctx.grad_index, ctx.grad_zero_rows = grad_index, grad_zero_rows
        return src.index_select(0, index)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        return _gather_rows(grad_out.contiguous(), ctx.grad_index, ctx.grad_zero_rows), None, None, None


class _WindowQKV(torch.autograd.Function):
    """(B*H*W, 3C) qkv of the valid tokens -> (3, B*nW*heads, N, head_dim) q (pre-scaled), k, v blocks.

    The official code pads the normalised map with zeros before the qkv projection, so padding tokens carry exactly
    the qkv bias: they are filled with it here instead of being projected (at 512x512 up to 42% of a stage's tokens).
    """

    @staticmethod
    def forward(ctx, qkv, bias, layout: WindowLayout, heads: int, scale: float):
        head_dim = qkv.shape[-1] // (3 * heads)
        ctx.layout, ctx.heads, ctx.scale = layout, heads, scale
        ctx.bias_dtype = bias.dtype if bias is not None else None
        blocks = qkv.reshape(-1, head_dim).index_select(0, layout.qkv_index)
        if bias is not None:
            # Under autocast the projection is half precision while its bias parameter stays float32.
            bias_rows = bias.view(3 * heads, head_dim).index_select(0, layout.qkv_pad_bias_rows).to(blocks.dtype)
            blocks.index_copy_(0, layout.qkv_pad_rows, bias_rows)
        else:
            blocks.index_fill_(0, layout.qkv_pad_rows, 0)
        blocks = blocks.view(3, layout.batch_windows * heads, layout.tokens_per_window, head_dim)
        blocks[0].mul_(scale)
        return blocks

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_blocks):
        layout, heads, scale = ctx.layout, ctx.heads, ctx.scale
        head_dim = grad_blocks.shape[-1]
        grad_rows = grad_blocks.contiguous().view(-1, head_dim)
        grad_qkv = grad_rows.index_select(0, layout.qkv_inverse).view(-1, 3, heads, head_dim)
        grad_qkv[:, 0].mul_(scale)
        grad_bias = None
        if ctx.bias_dtype is not None and ctx.needs_input_grad[1]:
            grad_bias = grad_rows.new_zeros(3, heads, head_dim, dtype=ctx.bias_dtype)
            grad_bias.view(-1, head_dim).index_add_(0, layout.qkv_pad_bias_rows,
                                                    grad_rows.index_select(0, layout.qkv_pad_rows).to(ctx.bias_dtype))
            grad_bias[0].mul_(scale)
            grad_bias = grad_bias.view(-1)
        return grad_qkv.view(-1, 3 * heads * head_dim), grad_bias, None, None, None


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows with a learned relative position bias."""

    def __init__(
        self,
        dim: int,
        window_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Derived from window_size, so not saved: official checkpoints that carry it are filtered by the converters.
        self.register_buffer('relative_position_index', gen_relative_position_index((window_size, window_size)),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)  # here, as the official code: same RNG order

    def relative_position_bias(self) -> torch.Tensor:
        """(num_heads, N, N) bias gathered from the table (recomputed each call: the table is trained)."""
        tokens = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(tokens, tokens, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, layout: WindowLayout, shift_mask: torch.Tensor | None) -> torch.Tensor:
        """(tokens, C) normalised map -> (tokens, C) attention output, windows and padding given by ``layout``.

        qkv runs on the map's tokens before partitioning and proj after merging: both are per-token maps, so this
        is the official computation without projecting padding tokens.
        """
        tokens, channels = x.shape
        heads, window_tokens = self.num_heads, layout.tokens_per_window
        query, key, value = _WindowQKV.apply(self.qkv(x), self.qkv.bias, layout, heads, self.scale)
        offset = self.relative_position_bias()  # (heads, N, N)
        if shift_mask is not None:
            offset = offset + shift_mask.unsqueeze(1)  # (num_windows, heads, N, N)
        groups = offset.shape[0] if offset.ndim == 4 else 1
        # Explicit softmax rather than scaled_dot_product_attention: its fused CPU kernels give no gradient for the
        # offset (which holds the trained bias), and even without gradients they are slower here (N = 49) than
        # two bmm calls once the offset is added in place, broadcast over images, instead of repeated per image.
        logits = torch.bmm(query, key.transpose(1, 2))
        logits.view(-1, groups, heads, window_tokens, window_tokens).add_(offset)
        probs = logits.softmax(-1)
        if self.training and self.attn_drop > 0:
            probs = F.dropout(probs, self.attn_drop)
        out = torch.bmm(probs, value)
        return self.proj_drop(self.proj(layout.merge(out).view(tokens, channels)))


class SwinBlock(nn.Module):
    """Pre-norm transformer block over (shifted) windows; works on channels-last maps of any size."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop: float,
        attn_drop: float,
        drop_path: float,
    ):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, layout: WindowLayout, shift_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, H, W, C); ``layout`` and ``shift_mask`` are the stage's, for this block's shift."""
        x = x + self.drop_path(self._window_attention(self.norm1(x), layout, shift_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _window_attention(self, x: torch.Tensor, layout: WindowLayout, shift_mask: torch.Tensor | None):
        # The official code pads after norm1, so padding tokens are zero going into qkv (see _WindowQKV).
        return self.attn(x.reshape(-1, x.shape[-1]), layout, shift_mask).view(x.shape)


class PatchMerging(nn.Module):
    """2x2 neighbour concatenation (official channel order x00, x10, x01, x11) + LayerNorm + linear 4C -> 2C."""

    def __init__(self, dim: int, norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim) if norm else nn.Identity()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
            height, width = height + height % 2, width + width % 2
        # (B, H/2, 2[row], W/2, 2[col], C) -> (B, H/2, W/2, col, row, C): one copy gives the official cat order.
        x = x.view(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(x.reshape(batch, height // 2, width // 2, 4 * channels)))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; pads the image on the right/bottom to a multiple of the patch size."""

    def __init__(self, patch_size: int, in_channels: int, embed_dims: int, norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dims) if norm else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) image -> (B, H/p, W/p, D) channels-last tokens."""
        height, width = image.shape[-2:]
        pad_bottom, pad_right = -height % self.patch_size, -width % self.patch_size
        if pad_bottom or pad_right:
            image = F.pad(image, (0, pad_right, 0, pad_bottom))
        x = self.proj(image).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


class SwinStage(nn.Module):
    """``depth`` blocks alternating regular and shifted windows, then an optional PatchMerging (official layout)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop: float,
        attn_drop: float,
        drop_path: Sequence[float],
        downsample: bool,
        patch_norm: bool,
        with_cp: bool,
    ):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.with_cp = with_cp
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                num_heads,
                window_size,
                shift_size=0 if index % 2 == 0 else self.shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[index],
            )
            for index in range(depth)
        )
        self.downsample = PatchMerging(dim, patch_norm) if downsample else None
        # Window indices and masks depend only on the input size: built once per size, not per block or step. Bounded,
        # since multi-scale training visits many sizes (an entry is a few MB at 1333x800).
        self._window_cache: OrderedDict[tuple, tuple[WindowLayout, torch.Tensor | None]] = OrderedDict()

    def window_setup(self, x: torch.Tensor, shift: int) -> tuple[WindowLayout, torch.Tensor | None]:
        """The window layout and shift mask for x's size; built once per size and device, shared by the blocks."""
        batch, height, width, _ = x.shape
        key = (batch, height, width, shift, x.device, x.dtype)
        setup = self._window_cache.get(key)
        if setup is not None:
            self._window_cache.move_to_end(key)
        else:
            ws = self.window_size
            layout = WindowLayout(batch, height, width, ws, shift, self.blocks[0].attn.num_heads, x.device)
            mask = None
            if shift:
                padded = (math.ceil(height / ws) * ws, math.ceil(width / ws) * ws)
                mask = shifted_window_mask(padded, ws, shift).to(device=x.device, dtype=x.dtype)
            setup = self._window_cache[key] = (layout, mask)
            if len(self._window_cache) > WINDOW_CACHE_SIZE:
                self._window_cache.popitem(last=False)
        return setup

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, H, W, C). Returns (stage output before downsampling, downsampled input of the next stage)."""
        for block in self.blocks:
            layout, mask = self.window_setup(x, block.shift_size)
            if self.with_cp and x.requires_grad:
                # Recompute the block in backward instead of keeping its activations (memory for ~25% more time).
                x = torch.utils.checkpoint.checkpoint(block, x, layout, mask, use_reentrant=False)
            else:
                x = block(x, layout, mask)
        return x, (self.downsample(x) if self.downsample is not None else None)


def _img_size(size: int | Sequence[int]) -> tuple[int, int]:
    """MMDet's ``pretrain_img_size``: an int, (side,) or (height, width)."""
    size = to_2tuple(size)
    size = to_2tuple(size[0]) if len(size) == 1 else size
    if len(size) != 2:
        raise ValueError(f'pretrain_img_size must be an int or (height, width), got {size}')
    return size


class SwinTransformer(BaseModule):
    """Swin Transformer backbone returning one normalised NCHW feature map per entry of ``out_indices``.

    ``arch`` ('tiny', 'small', 'base', 'large') fills in ``embed_dims``/``depths``/``num_heads``; explicit values
    override it. The remaining keyword names are those of MMDet 3.x / MMSeg 1.x's SwinTransformer, so a shipped config
    works after changing only its ``type``; ``convert_weights`` is accepted and ignored because checkpoint layouts
    are detected automatically. ``frozen_stages`` follows MMDet: 0 freezes the patch embedding, k >= 1 also freezes
    stages 1..k with their output norms.
    """

    def __init__(
        self,
        arch: str = 'tiny',
        embed_dims: int | None = None,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        ape: bool = False,
        use_abs_pos_embed: bool | None = None,
        patch_norm: bool = True,
        patch_size: int = 4,
        in_channels: int = 3,
        pretrain_img_size: int | Sequence[int] = 224,
        strides: Sequence[int] | None = None,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        with_cp: bool = False,
        act_cfg: dict | None = None,
        norm_cfg: dict | None = None,
        convert_weights: bool = False,
        pretrained: str | None = None,
        init_cfg: dict | list | None = None,
    ):
        if arch not in ARCH_SETTINGS:
            raise ValueError(f'arch must be one of {sorted(ARCH_SETTINGS)}, got {arch!r}')
        if pretrained is not None and init_cfg is not None:
            raise ValueError('give either pretrained or init_cfg, not both')
        if pretrained is not None:
            if isinstance(pretrained, os.PathLike):
                pretrained = os.fspath(pretrained)
            if not isinstance(pretrained, str) or not pretrained.strip():
                # caught here, when the model is built, not when init_weights tries to open it
                raise TypeError(f'pretrained must be a checkpoint path or URL (a string), got '
                                f'{type(pretrained).__name__} {pretrained!r}')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)

        settings = ARCH_SETTINGS[arch]
        embed_dims = settings['embed_dims'] if embed_dims is None else embed_dims
        depths = tuple(settings['depths'] if depths is None else depths)
        num_heads = tuple(settings['num_heads'] if num_heads is None else num_heads)
        if len(depths) != len(num_heads):
            raise ValueError(f'depths {depths} and num_heads {num_heads} must have the same length')
        if strides is not None and tuple(strides) != (patch_size,) + (2,) * (len(depths) - 1):
            raise ValueError(f'only the standard strides (patch_size, 2, 2, ...) are supported, got {tuple(strides)}')
        if act_cfg is not None and act_cfg.get('type') != 'GELU':
            raise ValueError(f"only act_cfg=dict(type='GELU') is supported, got {act_cfg}")
        if norm_cfg is not None and norm_cfg.get('type') != 'LN':
            raise ValueError(f"only norm_cfg=dict(type='LN') is supported, got {norm_cfg}")
        num_stages = len(depths)
        out_indices = tuple(out_indices)
        if not all(0 <= index < num_stages for index in out_indices):
            raise ValueError(f'out_indices {out_indices} must lie in [0, {num_stages})')

        self.arch = arch
        self.embed_dims = embed_dims
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = window_size
        self.patch_size = patch_size
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.ape = ape if use_abs_pos_embed is None else use_abs_pos_embed
        self.num_features = tuple(embed_dims * 2**index for index in range(num_stages))

        self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dims, norm=patch_norm)
        if self.ape:
            # Official detection layout (1, C, H, W): resized bicubically to the input's patch grid in forward.
            grid_h, grid_w = (size // patch_size for size in _img_size(pretrain_img_size))
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dims, grid_h, grid_w))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)

        drop_path_rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.layers = nn.ModuleList(
            SwinStage(
                dim=self.num_features[index],
                depth=depths[index],
                num_heads=num_heads[index],
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=drop_path_rates[sum(depths[:index]) : sum(depths[: index + 1])],
                downsample=index < num_stages - 1,
                patch_norm=patch_norm,
                with_cp=with_cp,
            )
            for index in range(num_stages)
        )
        for index in out_indices:
            self.add_module(f'norm{index}', nn.LayerNorm(self.num_features[index]))

        self._init_from_scratch()
        self._freeze_stages()

    def _init_from_scratch(self) -> None:
        """The official initialisation: truncated normal 0.02 for linears (the bias tables and the position embedding
        got theirs when built), drawn in the official order, so a seed gives the official code's weights.

        timm's trunc_normal_ is the official code's (inverse CDF); torch's samples by rejection, drawing other values.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` in any supported layout.

        Other init_cfg types go through MMEngine's initialisers; without init_cfg the weights set in __init__ stay.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
        elif cfg is not None:
            super().init_weights()

    def load_pretrained(self, checkpoint: str, prefix: str | None = None) -> tuple[list[str], list[str]]:
        """Load a checkpoint (path or URL MMEngine understands); logs the missing and unexpected backbone keys."""
        from mmengine.runner.checkpoint import CheckpointLoader

        raw = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        if prefix:
            # MMEngine's PretrainedInit semantics: keep only keys under ``prefix`` (e.g. 'backbone.') and strip it.
            raw = raw.get('state_dict', raw.get('model', raw))
            raw = {key[len(prefix) :]: value for key, value in raw.items() if key.startswith(prefix)}
        state_dict = load_backbone_state_dict(raw, model=self)
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        print_log(
            f'swinctl.SwinTransformer loaded {len(state_dict)} tensors from {checkpoint}; '
            f'missing keys: {missing or "none"}; unexpected keys: {unexpected or "none"}',
            logger='current',
        )
        return missing, unexpected

    def train(self, mode: bool = True) -> SwinTransformer:
        super().train(mode)
        self._freeze_stages()
        return self

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: list[nn.Module] = [self.patch_embed, self.pos_drop]
        for stage in range(1, min(self.frozen_stages, len(self.layers)) + 1):
            frozen.append(self.layers[stage - 1])
            if stage - 1 in self.out_indices:
                frozen.append(getattr(self, f'norm{stage - 1}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False
        if self.ape:
            self.absolute_pos_embed.requires_grad = False

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.patch_embed(image)
        if self.ape:
            pos = self.absolute_pos_embed
            if pos.shape[-2:] != x.shape[1:3]:
                pos = F.interpolate(pos, size=x.shape[1:3], mode='bicubic')
            x = x + pos.permute(0, 2, 3, 1)
        x = self.pos_drop(x)
        outputs = []
        for index, stage in enumerate(self.layers):
            out, x = stage(x)
            if index in self.out_indices:
                norm = getattr(self, f'norm{index}')
                outputs.append(norm(out).permute(0, 3, 1, 2).contiguous())
        return tuple(outputs)
