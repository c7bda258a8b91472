"""The lineage walk: which versions a version was derived from, and which derive from it.

Lineage is the parent/child graph recorded when versions are created (an adapter's base, a
quantized model's source). The walk is breadth first and never turns
around: from a version it goes only up to ancestors or only down to descendants, so asking
for both directions does not return a sibling through a shared parent.
"""

from __future__ import annotations

from collections import deque

from sqlalchemy import select
from sqlalchemy.orm import Session

from forgeline.registry.schema import ParentRow, VersionRow
from forgeline.v1 import registry_pb2


def walk_lineage(
    s: Session, root: VersionRow, direction: int, max_depth: int = 0
) -> tuple[list[VersionRow], list[tuple[str, str]]]:
    """Walks parent/child edges from `root`, breadth first.

    Args:
        s: An open session.
        root: The version to start from.
        direction: A `LineageDirection`; unspecified walks both ways.
        max_depth: How many edges away to go at most; 0 for no limit.

    Returns:
        The versions reached (without the root), in the order they were reached, and the
        (parent, child) edges crossed, each once, as `model:N` keys.
    """
    up = direction in (0, registry_pb2.LINEAGE_DIRECTION_ANCESTORS)
    down = direction in (0, registry_pb2.LINEAGE_DIRECTION_DESCENDANTS)
    seen = {root.id}
    reached: list[VersionRow] = []
    edges: list[tuple[int, int]] = []
    queue = deque([(root.id, 0, up, down)])
    while queue:
        vid, depth, go_up, go_down = queue.popleft()
        if max_depth and depth >= max_depth:
            continue
        steps = []
        if go_up:
            steps += [
                (p, (p, vid), True, False)
                for p in s.scalars(select(ParentRow.parent_id).where(ParentRow.child_id == vid))
            ]
        if go_down:
            steps += [
                (c, (vid, c), False, True)
                for c in s.scalars(select(ParentRow.child_id).where(ParentRow.parent_id == vid))
            ]
        for other, edge, next_up, next_down in steps:
            edges.append(edge)
            if other not in seen:
                seen.add(other)
                reached.append(s.get(VersionRow, other))
                queue.append((other, depth + 1, next_up, next_down))
    keys = {r.id: f"{r.model.name}:{r.number}" for r in [root, *reached]}
    return reached, [(keys[p], keys[c]) for p, c in dict.fromkeys(edges)]
