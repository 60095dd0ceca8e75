"""A masked autoencoder (MAE, He et al. 2022) with the parameter names of facebookresearch/mae, so its official
checkpoints load by file, and curate's own tiny ones (`curate train-mae`) load the same way.

The module is written here (no timm): pre-norm ViT blocks (LayerNorm eps 1e-6, fused qkv with bias, GELU MLP), a
conv patch embedding, fixed 2-D sin-cos position embeddings with a zero slot for the cls token, and the
lightweight decoder that predicts every patch's pixels. Inputs are images normalized by `mean`/`std` (ImageNet's
by default, as the official models), and predictions are in that normalized space (per-patch normalized when the
model was trained with norm_pix_loss).

Reconstruction takes an explicit keep mask: the encoder sees only the kept patches, the decoder fills the others
with its mask token, and the kept pixels are pasted back exactly.

Checkpoints load and save in curate.models.mae_io.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from curate.models.mae_config import MAEConfig
from curate.pixels.codec import pixel_mask


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Returns the fixed 1 x (1 + grid^2) x dim 2-D sin-cos embedding: half the channels encode the row, half the
    column, each as sin and cos at dim/4 frequencies 1 / 10000^(i / (dim/4)); the cls slot is zeros."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        angle = pos[:, None].double() * omega[None, :]
        parts += [torch.sin(angle), torch.cos(angle)]
    table = torch.cat(parts, dim=1).float()
    return torch.cat([torch.zeros(1, dim), table])[None]


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches to vectors (a stride-p convolution named `proj`, as timm's)."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns N x L x dim patch embeddings, patches in row-major order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the attended N x T x dim tokens."""
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns fc2(gelu(fc1(x)))."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, round(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the block's output tokens."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MaskedAutoencoderViT(nn.Module):
    """The MAE: encoder over the kept patches, decoder predicting every patch; official parameter names."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        if config.img_size % config.patch_size or config.embed_dim % 4 or config.decoder_embed_dim % 4:
            raise ValueError("img_size must be a multiple of patch_size, and both widths multiples of 4")
        self.config = c = config
        self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(c.embed_dim, c.grid), requires_grad=False)
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(c.decoder_embed_dim, c.grid), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(c.decoder_embed_dim, c.decoder_num_heads, c.mlp_ratio) for _ in range(c.decoder_depth))
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_size**2 * 3)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation: xavier-uniform linears and patch projection, N(0, 0.02) cls and mask tokens."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Returns the N x L x (p*p*3) predictions of every patch of normalized N x 3 x S x S images, the encoder
        seeing only the patches `ids_keep` (N x k patch indices, row-major) lists."""
        d = self.config.embed_dim
        x = self.patch_embed(images) + self.pos_embed[:, 1:]
        x = torch.gather(x, 1, ids_keep[:, :, None].expand(-1, -1, d))
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self._decode(self.norm(x), ids_keep)

    def _decode(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        n, length, dd = len(x), self.config.num_patches, self.config.decoder_embed_dim
        full = self.mask_token.expand(n, length, dd).clone()
        full.scatter_(1, ids_keep[:, :, None].expand(-1, -1, dd), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """Returns N x L x (p*p*3) patches of N x 3 x S x S images (row-major patches, pixels (row, col, channel))."""
    n, c, s, _ = images.shape
    g = s // p
    return images.reshape(n, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * c)


def unpatchify(patches: torch.Tensor, p: int) -> torch.Tensor:
    """Returns the N x 3 x S x S images of N x L x (p*p*3) patches (the inverse of patchify)."""
    n, length, _ = patches.shape
    g = math.isqrt(length)
    return patches.reshape(n, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(n, 3, g * p, g * p)


def random_keep(n: int, length: int, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Returns N x int(L * (1 - mask_ratio)) random patch indices per image to keep (MAE's per-sample shuffle)."""
    keep = max(1, int(length * (1 - mask_ratio)))
    return torch.argsort(torch.rand(n, length, generator=generator), dim=1)[:, :keep]


def dropped_loss(model: MaskedAutoencoderViT, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """Returns each image's mean squared error over its dropped patches (MAE's loss; the target per-patch
    normalized when config.norm_pix_loss)."""
    pred = model(images, ids_keep)
    target = patchify(images, model.config.patch_size)
    if model.config.norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    dropped = torch.ones(pred.shape[:2], device=pred.device).scatter_(1, ids_keep, 0.0)
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * dropped).sum(1) / dropped.sum(1).clamp_min(1)


def reconstruct(mae: MaskedAutoencoderViT, pixels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Returns uint8 N x S x S x 3 images: the kept patches of `pixels` (uint8 N x S x S x 3) exactly, the others
    the MAE's prediction from the kept ones. `keep` is a bool N x L mask (row-major patches)."""
    config, device = mae.config, next(mae.parameters()).device
    out = np.array(pixels, dtype=np.uint8, copy=True)
    counts = keep.sum(1)
    for count in np.unique(counts):  # one batch per kept count, so each batch has a rectangular ids_keep
        rows = np.flatnonzero(counts == count)
        ids = torch.as_tensor(np.stack([np.flatnonzero(keep[r]) for r in rows]), device=device)
        x = normalize_pixels(pixels[rows], config, device)
        with torch.inference_mode():
            pred = mae(x, ids)
            if config.norm_pix_loss:
                pred = _visible_statistics(patchify(x, config.patch_size), ids, pred)
            filled = _to_uint8(unpatchify(pred, config.patch_size), config)
        out[rows] = np.where(pixel_mask(keep[rows], config.patch_size)[..., None], pixels[rows], filled)
    return out


def normalize_pixels(pixels: np.ndarray, config: MAEConfig, device: str | torch.device = "cpu") -> torch.Tensor:
    """Returns uint8 N x S x S x 3 pixels as the MAE's normalized float N x 3 x S x S input."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(device).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
    return (x - mean) / torch.tensor(config.std, device=device).view(1, 3, 1, 1)


def _to_uint8(images: torch.Tensor, config: MAEConfig) -> np.ndarray:
    mean = torch.tensor(config.mean, device=images.device).view(1, 3, 1, 1)
    x = images * torch.tensor(config.std, device=images.device).view(1, 3, 1, 1) + mean
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _visible_statistics(patches: torch.Tensor, ids_keep: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Returns per-patch-normalized predictions scaled back with each image's mean visible patch mean and std
    (a norm_pix_loss model predicts no patch's own statistics; its visible neighbours' are the best estimate)."""
    visible = torch.gather(patches, 1, ids_keep[:, :, None].expand(-1, -1, patches.shape[2]))
    mean = visible.mean(-1).mean(1)[:, None, None]
    std = (visible.var(-1) + 1e-6).sqrt().mean(1)[:, None, None]
    return pred * std + mean
