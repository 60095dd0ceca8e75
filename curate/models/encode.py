"""From image bytes and captions to L2-normalized CLIP embeddings, split into a CPU part and a model part.

The CPU part (decode, resize, crop) yields uint8 pixels, four times smaller than floats to move between
Ray workers; the model part normalizes them on the model's device.
"""

import io

import numpy as np
from PIL import Image

# Resizing a strip's short side to the model's input makes its long side huge; past this aspect ratio only the
# centre (all that the crop keeps, with a margin for the resampling filter) is resized.
MAX_RESIZE_ASPECT = 4


def image_to_pixels(data: bytes, size: int) -> np.ndarray:
    """Returns the image resized (shortest side, bicubic) and center-cropped to size x size, as uint8 HWC RGB.
    Memory stays bounded by the image's short side whatever its shape."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            im.draft("RGB", (size, size))  # decode at a reduced DCT scale that is still >= size
        im = im.convert("RGB")
        short = min(im.size)
        if max(im.size) > MAX_RESIZE_ASPECT * short:
            keep = MAX_RESIZE_ASPECT * short
            left, top = (im.width - min(im.width, keep)) // 2, (im.height - min(im.height, keep)) // 2
            im = im.crop((left, top, left + min(im.width, keep), top + min(im.height, keep)))
        scale = size / min(im.size)
        width, height = max(size, round(im.width * scale)), max(size, round(im.height * scale))
        im = im.resize((width, height), Image.Resampling.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def square_pixels(data: bytes, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Returns (the whole image resized to size x size, bicubic, aspect ratio not kept, as uint8 HWC RGB; its
    original (width, height)). Nothing is cropped, so resizing back to the original size gives the whole image."""
    with Image.open(io.BytesIO(data)) as im:
        original = im.size
        if im.format == "JPEG":
            im.draft("RGB", (size, size))
        im = im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8), original


def pixels_to_tensor(pixels: np.ndarray, mean, std, device: str):
    """Returns a normalized float NCHW tensor on `device` from uint8 NHWC pixels."""
    import torch

    x = torch.from_numpy(np.array(pixels, dtype=np.uint8, copy=True)).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def encode_batch(loaded, pixels: np.ndarray, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Returns L2-normalized float32 (image, text) embeddings of a batch; bf16 autocast on GPU."""
    import torch

    model, device = loaded.model, loaded.device
    images = pixels_to_tensor(pixels, loaded.mean, loaded.std, device)
    tokens = loaded.tokenizer(captions).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
    with torch.inference_mode(), autocast:
        image = model.encode_image(images, normalize=True)
        text = model.encode_text(tokens, normalize=True)
    return _normalized(image), _normalized(text)


def _normalized(x) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()
