"""Text as a model reads it: tag characters read, invisible characters out, look-alike
letters folded, character references, base64, hex and bits decoded, spelled-out words
joined, leetspeak read, with a map back to the original for redaction; and second
readings (shifted alphabets and backwards writing, words broken by hyphens, Morse code,
Pig Latin) that the rails judge beside it. The rails judge this text, and the trained
heads learn from it, so that what is served is what was trained on."""

from guard.reading.normalize import normalize, normalized_text
from guard.reading.offsets import Normalized

__all__ = ["Normalized", "normalize", "normalized_text"]
