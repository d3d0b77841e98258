"""Stop-string matching and trimming tokens to the text that remains."""

from __future__ import annotations

from cotspec.backends.stopping import find_stop, tokens_covering


def test_find_stop_returns_the_earliest_match_of_any_stop_string():
    assert find_stop("abc\n\nQ: next", ("Q:", "\n\n")) == 3
    assert find_stop("no match here", ("Q:",)) is None
    assert find_stop("anything", ()) is None
    assert find_stop("empty stop strings are ignored", ("",)) is None


def test_tokens_covering_drops_tokens_wholly_inside_the_stop_string():
    pieces = {1: "The", 2: " answer", 3: " is", 4: " 4", 5: ".\n", 6: "\n", 7: "Q"}

    def decode(ids):
        return "".join(pieces[i] for i in ids)

    ids = [1, 2, 3, 4, 5, 6, 7]
    text = decode(ids)
    cut = find_stop(text, ("\n\nQ",))
    assert text[:cut] == "The answer is 4."
    # ".\n" straddles the cut and stays; "\n" and "Q" lie inside the stop string and go.
    assert tokens_covering(ids, cut, decode) == 5
    assert tokens_covering(ids, 0, decode) == 0
    assert tokens_covering(ids, len(text), decode) == 7
