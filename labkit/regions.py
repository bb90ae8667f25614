"""AWS regions labkit knows by name, so a typo is caught before anything is created."""

from __future__ import annotations

import difflib

# Commercial regions as of 2026. Opt-in regions are listed too: whether an account has
# them enabled is an AWS question, answered at plan time when AWS is reachable.
KNOWN_REGIONS: tuple[str, ...] = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    "ca-central-1", "ca-west-1", "mx-central-1",
    "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2",
    "eu-north-1", "eu-south-1", "eu-south-2",
    "me-south-1", "me-central-1", "il-central-1", "af-south-1",
    "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
    "ap-southeast-5", "ap-southeast-7",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
)

# Letters that a hurried typist (or an OCR'd handout) puts where a region's digit goes.
_LOOK_ALIKE_DIGITS = str.maketrans({"l": "1", "i": "1", "|": "1", "o": "0"})


def is_known(region: str) -> bool:
    return region in KNOWN_REGIONS


def suggest(region: str) -> str:
    """A 'did you mean' hint for a mistyped region, or a pointer to the list.

    Look-alikes come first: 'eu-west-l' is eu-west-1 with a letter l, not eu-west-3 (which
    plain string similarity would pick, as every eu-west-N is one character away), and
    'eu-west-1a' is a zone of eu-west-1.
    """
    cleaned = region.strip().lower().replace("_", "-").replace(" ", "-")
    head, _, tail = cleaned.rpartition("-")
    digits = tail.translate(_LOOK_ALIKE_DIGITS)
    candidates = [cleaned, f"{head}-{digits}" if head else digits,
                  cleaned[:-1] if cleaned[-1:].isalpha() and len(cleaned) > 1 else ""]
    for candidate in candidates:
        if candidate in KNOWN_REGIONS:
            return f"did you mean {candidate!r}?"
    close = difflib.get_close_matches(cleaned, KNOWN_REGIONS, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "use a region code such as 'eu-west-1' or 'us-east-1'"
