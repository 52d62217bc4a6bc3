"""`faceapi galleries` and `faceapi persons` without an action list, as a new user expects."""

from __future__ import annotations

import pytest
from faceapi_client.cli import build_parser, with_default_action


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["galleries"], ["galleries", "list"]),
        (["persons"], ["persons", "list"]),
        (["persons", "--gallery", "staff"], ["persons", "list", "--gallery", "staff"]),
        (["--url", "http://h:1", "jobs", "--json"], ["--url", "http://h:1", "jobs", "list", "--json"]),
        (["--url=http://h:1", "keys"], ["--url=http://h:1", "keys", "list"]),
        (["persons", "show", "ID"], ["persons", "show", "ID"]),
        (["persons", "--help"], ["persons", "--help"]),
        (["enroll", "photos", "--gallery", "persons"], ["enroll", "photos", "--gallery", "persons"]),
    ],
)
def test_a_listing_group_without_an_action_lists(argv, expected):
    assert with_default_action(argv) == expected


def test_the_parser_reads_them_as_the_list_commands():
    parser = build_parser()
    persons = parser.parse_args(with_default_action(["persons", "--gallery", "staff"]))
    assert (persons.action, persons.gallery) == ("list", "staff")
    assert parser.parse_args(with_default_action(["galleries"])).action == "list"
