"""A sample's json member: parsed, bounded in depth, and stored as key-sorted text."""

import json

MAX_JSON_DEPTH = 64


class SampleCheckError(Exception):
    """A sample fails a check; args are (reason, detail)."""


def is_valid_text(value: str) -> bool:
    """Returns whether `value` encodes as UTF-8 (holds no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_depth(value: object) -> int:
    """Returns how deeply objects and arrays nest in parsed json (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        deepest = max(deepest, depth if isinstance(node, dict | list) else 0)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse_json(text: bytes | str | None, expected: bool) -> tuple[dict | None, str | None]:
    """Returns the sample's json as an object and as the text the catalog stores (None, None without one); raises
    SampleCheckError for json that is missing when `expected`, invalid, not an object or nested too deeply."""
    if text is None:
        if expected:
            raise SampleCheckError("missing json", "other samples in this shard have a .json member")
        return None, None
    try:
        meta = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SampleCheckError("invalid json", str(exc)[:200]) from None
    except RecursionError:
        raise SampleCheckError("invalid json", "nested too deeply to parse") from None
    if not isinstance(meta, dict):
        raise SampleCheckError("invalid json", f"expected an object, got {type(meta).__name__}")
    if _json_depth(meta) > MAX_JSON_DEPTH:
        raise SampleCheckError("invalid json", f"nested deeper than {MAX_JSON_DEPTH} levels")
    stored = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    if not is_valid_text(stored):
        raise SampleCheckError("invalid json", "a string is not valid Unicode (a lone surrogate)")
    return meta, stored
