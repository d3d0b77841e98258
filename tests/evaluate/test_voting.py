from cotspec.evaluate.voting import majority_vote


def test_majority_wins():
    assert majority_vote(["3", "5", "5", None, "3", "5"]) == ("5", {"3": 2, "5": 3})


def test_tie_goes_to_first_seen():
    assert majority_vote(["7", "2", "2", "7"])[0] == "7"
    assert majority_vote(["2", "7", "7", "2"])[0] == "2"


def test_abstentions_do_not_vote():
    assert majority_vote([None, None, "4"]) == ("4", {"4": 1})
    assert majority_vote([None, None]) == (None, {})
