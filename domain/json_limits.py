"""Limits on free-form JSON that clients store and that later answers carry (a person's metadata).

Nesting is counted without recursion: a document hundreds of levels deep must be refused, not
crash the check (Python's recursion limit is about 1000 frames, and json.dumps, the JSONB
round trip and every later answer that carries the value recurse once per level)."""

from __future__ import annotations

from typing import Any

# Objects and lists inside one another, the metadata object itself counting as the first: room
# for any record a person's metadata holds, far below what recursive encoders choke on.
METADATA_MAX_DEPTH = 8


def nesting_depth(value: Any, stop_above: int) -> int:
    """How many objects and lists lie inside one another in `value` (a scalar: 0), counted until
    it passes `stop_above` (then that plus one: the value is refused anyway)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop_above:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest
