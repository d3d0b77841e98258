from cotspec.evaluate.voting import majority_vote


def test_majority_wins():
    assert majority_vote(["3", "5", "5", None, "3", "5"]) == ("5", {"3": 2, "5": 3})


def test_tie_goes_to_first_seen():
    assert majority_vote(["7", "2", "2", "7"])[0] == "7"
    assert majority_vote(["2", "7", "7", "2"])[0] == "2"


def test_abstentions_do_not_vote():
    assert majority_vote([None, None, "4"]) == ("4", {"4": 1})
    assert majority_vote([None, None]) == (None, {})


def test_answers_the_task_equates_vote_together():
    from cotspec.tasks.scoring import bbh_vote_key, math_vote_key

    # Two spellings of B outvote C; the winner is reported as first given.
    assert majority_vote(["C", "B", "(B)", "C", "b"], key=bbh_vote_key) == ("B", {"(C)": 2, "(B)": 3})
    assert majority_vote(["Yes", "no", "No"], key=bbh_vote_key) == ("no", {"yes": 1, "no": 2})
    assert majority_vote(["1/2", "3", "0.5", "3.0", "0.50"], key=math_vote_key) == ("1/2", {"1/2": 3, "3": 2})
    # Without a key, spellings stay apart (the default for tasks that declare none).
    assert majority_vote(["C", "B", "(B)", "C"])[0] == "C"


def test_user_tasks_vote_numbers_by_value_and_text_by_exact_match():
    from cotspec.tasks.user import any_vote_key

    assert majority_vote(["5", "yes", "5.0", "Yes", "YES"], key=any_vote_key) == ("yes", {"5": 2, "yes": 3})
