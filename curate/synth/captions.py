"""Web-like text for the synthetic pool: concept captions, junk captions, fake URLs and uids."""

from __future__ import annotations

import hashlib

import numpy as np

from curate.synth.concepts import concept_parts

# {a} is the article for the colour word, {c} the colour, {s} the shape, {bg} the background word,
# {z} the size word ("small"/"large"); templates with {bg}/{z} are only used when those are known.
TEMPLATES: tuple[str, ...] = (
    "a photo of {a} {c} {s}",
    "{a} {c} {s}",
    "{c} {s}",
    "a picture of {a} {c} {s}",
    "an image of {a} {c} {s} shape",
    "small {c} {s} icon",
    "{c} {s} clipart",
    "{c} {s} vector illustration",
    "simple {c} {s} drawing",
    "{c} {s} logo",
    "close-up of {a} {c} {s}",
    "{a} {c} colored {s}",
    "{s}, {c}",
    "the {c} {s}",
    "{c} {s} sticker",
    "{c} {s} on a {bg} background",
    "{a} {c} {s} against a {bg} background",
    "{a} {z} {c} {s}",
    "{z} {c} {s} on {bg}",
)

WEB_SUFFIXES: tuple[str, ...] = (
    "free download", "stock image", "| pngtree", "- stock vector", "wallpaper hd", "#design",
    "royalty free", "2019", "(transparent background)", "png", "- Etsy", "hd image", "by artist",
)
WEB_PREFIXES: tuple[str, ...] = ("Buy", "Download", "New", "Free", "Cute", "Vintage", "Premium")

_FILE_STEMS = ("IMG_{n4}.JPG", "DSC{n5}", "DSC_{n4}.jpg", "image ({n1}).png", "photo_{n4}.jpeg",
               "P{n7}.JPG", "Screenshot_{n4}", "untitled-{n1}", "thumbnail", "image", "GOPR{n4}.JPG",
               "{hex8}.jpg", "WhatsApp Image {n4}", "画像 IMG_{n4}")
_SPAM = (
    "best cheap deals buy now free shipping", "click here", "Home | Products | Contact Us",
    "sale 50% off limited time only", "www.cheap-deals-online.com", "★★★★★ top seller ★ order today",
    "lorem ipsum dolor sit amet", "loading...", "no image available", "404 not found",
    "casino bonus win big", "sponsored", "cheap viagra online", "subscribe for more",
    "Follow us on Instagram", "Copyright 2021 All Rights Reserved", "placeholder", "N/A",
)
_DOMAINS = ("cdn.shopimg.net", "images.example-blog.com", "static.photohost.org", "i.picsvault.io",
            "media.newsdaily.co", "assets.clipartzone.com", "img.forum-board.net", "uploads.wpsite.org",
            "content.stockpix.com", "pics.market-place.biz", "files.portfolio.site", "s3.imgstore.net")
_PATHS = ("wp-content/uploads/{y}/{m:02d}", "images", "img/products", "media/cache", "photos/{y}", "i",
          "static/img")
_EXTS = (".jpg", ".jpg", ".jpeg", ".png", ".JPG", ".webp", ".jpg?w=600", ".jpg?v={n1}")


def make_uid(seed: int, stream: str, index: int) -> str:
    """Returns a 128-bit lowercase-hex uid derived from (seed, stream, index)."""
    return hashlib.sha256(f"curate.synth/{seed}/{stream}/{index}".encode()).hexdigest()[:32]


def _pick(rng: np.random.Generator, items: tuple[str, ...]) -> str:
    return items[int(rng.integers(len(items)))]


def concept_caption(rng: np.random.Generator, concept: int, background: str = "", size_word: str = "",
                    web_words: float = 0.3) -> str:
    """Returns a caption naming the concept's colour and shape, sometimes with extra web-like words."""
    color, shape = concept_parts(concept)
    usable = [t for t in TEMPLATES if (background or "{bg}" not in t) and (size_word or "{z}" not in t)]
    text = _pick(rng, tuple(usable)).format(
        a="an" if color[0] in "aeiou" else "a", c=color, s=shape, bg=background, z=size_word)
    roll = rng.random()
    if roll < web_words * 0.6:
        text = f"{text} {_pick(rng, WEB_SUFFIXES)}"
    elif roll < web_words:
        text = f"{_pick(rng, WEB_PREFIXES)} {text}"
    if rng.random() < 0.15:
        text = text.title()
    elif rng.random() < 0.2:
        text = text[0].upper() + text[1:]
    return text


def junk_caption(rng: np.random.Generator) -> str:
    """Returns a caption that says nothing about the image: a camera file name or SEO spam."""
    if rng.random() < 0.5:
        stem = _pick(rng, _FILE_STEMS)
        return stem.format(n1=int(rng.integers(1, 20)), n4=int(rng.integers(0, 10000)),
                           n5=f"{int(rng.integers(0, 100000)):05d}", n7=f"{int(rng.integers(0, 10**7)):07d}",
                           hex8=f"{int(rng.integers(0, 2**32)):08x}")
    return _pick(rng, _SPAM)


def fake_url(rng: np.random.Generator, caption: str) -> str:
    """Returns a plausible http(s) image URL, with a slug from the caption when it has words."""
    words = "".join(ch if ch.isascii() and ch.isalnum() else " " for ch in caption.lower()).split()
    slug = "-".join(words[:6]) if words and rng.random() < 0.6 else f"{int(rng.integers(0, 2**40)):010x}"
    path = _pick(rng, _PATHS).format(y=int(rng.integers(2012, 2024)), m=int(rng.integers(1, 13)))
    ext = _pick(rng, _EXTS).format(n1=int(rng.integers(1, 20)))
    scheme = "https" if rng.random() < 0.7 else "http"
    return f"{scheme}://{_pick(rng, _DOMAINS)}/{path}/{slug}-{int(rng.integers(100, 100000))}{ext}"
