"""The primary family of a study: the few tests declared before the run that alone are
Holm-adjusted and judged against the paper. Spelled 'response ~ effect'; imports nothing heavy,
so the study schema validates a family without loading pandas."""
from __future__ import annotations

MAX_PRIMARY = 6  # tests in the primary (Holm-adjusted, verdict-bearing) family


def parse_test(text: str) -> tuple[str, str]:
    """"gfd ~ ssr" or "ssc ~ ssr:mcr" -> (response, effect with its factors sorted as effects.csv spells it)."""
    response, sep, effect = (part.strip() for part in str(text).partition("~"))
    factors = [f.strip() for f in effect.split(":")]
    if not sep or not response or not all(factors):
        raise ValueError(f"{text!r} is not a test: write 'response ~ effect', e.g. 'gfd ~ ssr' or 'ssc ~ mcr:ssr'")
    return response, ":".join(sorted(factors))
