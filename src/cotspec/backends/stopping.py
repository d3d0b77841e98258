"""Stop sequences, matched on generated text the way OpenAI-compatible servers do.

Matching is on decoded text, not on token ids: a stop string can be split across tokens in many ways
and only the text is unambiguous. Only the generated text is searched, never the prompt (transformers'
`StopStringCriteria` also fires on a stop string that straddles the prompt boundary, which the server
backends never do, so results would differ between backends).
"""

from __future__ import annotations

from typing import Callable, Sequence


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index in `text` where the earliest occurrence of any stop string starts, or None."""
    positions = [index for stop in stops if stop and (index := text.find(stop)) >= 0]
    return min(positions) if positions else None


def tokens_covering(token_ids: Sequence[int], length: int, decode: Callable[[Sequence[int]], str]) -> int:
    """How many leading tokens it takes for the decoded text to reach `length` characters.

    After text is cut before a stop string, the tokens that lie wholly inside the stop string are
    dropped as well, so returned tokens (and their logprobs) describe the returned text. The token
    that straddles the cut, if any, is kept.
    """
    count = len(token_ids)
    while count > 0 and len(decode(token_ids[: count - 1])) >= length:
        count -= 1
    return count
