import pytest

from fbenv.parsing import parse_choice, parse_preference, parse_rating


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Rating: 4", 4.0),
        ("rating:5", 5.0),
        ("**Rating:** 2", 2.0),
        ("I'd say 3/5 overall", 3.0),
        ("four out of 5", 4.0),
        ("Solid. 5 stars!", 5.0),
        ("★★★", 3.0),
        ("I would give it a 2.", 2.0),
        ("Score = 1", 1.0),
        ("Rating: N", None),
        ("Rating: 9", None),  # out of scale is not clamped into a rating
        ("1. Very good 2. Good 3. Bad", None),  # several numbers: ambiguous
        ("", None),
        ("Great service!", None),
    ],
)
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


def test_parse_choice():
    labels = ("A", "B", "C", "D")
    assert parse_choice("BUY B", labels, keyword="buy") == "B"
    assert parse_choice("buy option c please", labels, keyword="buy") == "C"
    assert parse_choice("I'll take (D).", labels) == "D"
    assert parse_choice("A or B?", labels) is None
    assert parse_choice("nothing here", labels) is None
    assert parse_preference("I prefer B.") == 1
    assert parse_preference("Response A is better") == 0
