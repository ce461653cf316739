"""Recognition: which bundled cell the user's forward computes, and how.

Placeholder; filled below.
"""


def describe(raw: dict) -> str:
    return ""
