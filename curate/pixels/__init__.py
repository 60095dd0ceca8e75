"""Pixel quantization (the second half of Dataset Quantization, Zhou et al. 2023): rank each image's patches by
saliency, keep the most informative ones losslessly with a mask, and rebuild the rest with a masked autoencoder."""

from curate.pixels.codec import PatchRecord, decode_patches, encode_patches, kept_count, select_patches

__all__ = ["PatchRecord", "decode_patches", "encode_patches", "kept_count", "select_patches"]
