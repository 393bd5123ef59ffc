"""Every public name has an entry in the API reference."""

import pathlib
import re

import evasync

API_PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "reference" / "api.md"


def test_every_public_name_is_documented():
    text = API_PAGE.read_text()
    documented = set(re.findall(r"^\.\. (?:auto\w+|py:\w+):: evasync\.(\w+)(?:\(\))?\s*$", text, re.M))
    missing = sorted(set(evasync.__all__) - documented)
    assert not missing, f"public names without a reference entry in {API_PAGE.name}: {missing}"
