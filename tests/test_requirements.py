"""The requirement files pin sets that pip can install together."""

from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT


def pinned(path):
    """{distribution name: Requirement} of a requirements file, `-r` includes left out."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    found = (Requirement(line) for line in lines if line and not line.startswith("-"))
    return {req.name.lower(): req for req in found}


def lowest_allowed(req):
    """The smallest version a `>=`/`==` requirement lets pip pick."""
    floors = [spec.version for spec in req.specifier if spec.operator in (">=", "==")]
    assert floors, f"{req} has no lower bound"
    return min(floors, key=Version)


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-test.txt"])
def test_every_floor_satisfies_the_pinned_trl(name):
    ours = pinned(ROOT / name)
    assert ours["trl"].specifier.contains(metadata.version("trl")), "the installed trl is not the pinned one"
    needs = [Requirement(r) for r in metadata.requires("trl") if "extra ==" not in r]
    checked = [req for req in needs if req.name.lower() in ours]
    assert checked, "trl shares no dependency with the file"
    for req in checked:
        floor = lowest_allowed(ours[req.name.lower()])
        assert req.specifier.contains(floor), f"{name} allows {req.name}=={floor}, but trl needs {req}"
