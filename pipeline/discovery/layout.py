"""From relations to the spec's tree: a root, the tables pointing at a space pooled into it as
children (1:N), the tables a space points at read as references (N:1), each table one space.
What cannot be placed that way (a second path to a table, a cycle, too deep) is left out and
said why."""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field

from pipeline.discovery.catalog import Table
from pipeline.discovery.relations import Relation

MAX_DEPTH = 4
"""Links between the root and the farthest space (a deeper table is left out)."""


@dataclass
class Link:
    relation: Relation
    kind: str
    """`child` (the relation's table is pooled into the referenced one's space) or
    `reference` (the relation's table reads the referenced row)."""


@dataclass
class Layout:
    root: str
    spaces: dict[str, str]
    """Address -> space name, the root first, then in the order they were reached."""
    depth: dict[str, int]
    links: list[Link] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """One sentence per relation or table left out, saying why."""


def choose_root(tables: list[Table], relations: list[Relation]) -> str:
    """The table the most other tables point at (ties: more rows pointing at it, then the
    name), so that the spec is centred on the entity the warehouse is about."""
    pointing: dict[str, set[str]] = {t.address: set() for t in tables}
    rows: Counter[str] = Counter()
    size = {t.address: t.rows for t in tables}
    for relation in relations:
        if relation.table != relation.referenced:
            pointing[relation.referenced].add(relation.table)
            rows[relation.referenced] += size[relation.table]
    return min(pointing, key=lambda a: (-len(pointing[a]), -rows[a], a))


def space_names(tables: list[Table]) -> dict[str, str]:
    """Address -> a space name (an identifier): the table's name, with its schema where two
    schemas hold the same name."""
    clashes = Counter(_identifier(t.name) for t in tables)
    names = {}
    for table in tables:
        name = _identifier(table.name)
        names[table.address] = (
            _identifier(f"{table.schema}_{table.name}") if clashes[name] > 1 else name
        )
    return names


def _identifier(text: str) -> str:
    name = re.sub(r"[^0-9a-zA-Z_]", "_", text).lower().strip("_") or "table"
    return f"t_{name}" if name[0].isdigit() else name


def lay_out(tables: list[Table], relations: list[Relation], root: str) -> Layout:
    """Walk outwards from `root`: a table pointing at a placed space becomes its child, a
    table a placed space points at its reference, each placed once (breadth first, so the
    shortest path wins). A relation between two placed spaces is kept as a reference when it
    makes no cycle, else left out."""
    names = space_names(tables)
    layout = Layout(root, {root: names[root]}, {root: 0})
    used: set[Relation] = set()
    too_deep: set[str] = set()
    queue = deque([root])
    ordered = sorted(relations, key=lambda r: (r.table, r.columns, r.referenced))
    while queue:
        address = queue.popleft()
        for relation in ordered:
            if relation in used or relation.table == relation.referenced:
                continue
            if relation.referenced == address:
                other, kind = relation.table, "child"
            elif relation.table == address:
                other, kind = relation.referenced, "reference"
            else:
                continue
            if other in layout.spaces:
                continue  # decided once every table is placed
            used.add(relation)
            if layout.depth[address] + 1 > MAX_DEPTH:
                if other not in too_deep:
                    too_deep.add(other)
                    layout.left_out.append(
                        f"{other}: more than {MAX_DEPTH} links from {root} (through {address})"
                    )
                continue
            layout.spaces[other] = names[other]
            layout.depth[other] = layout.depth[address] + 1
            layout.links.append(Link(relation, kind))
            queue.append(other)
    for relation in ordered:
        if relation in used:
            continue
        _place_extra(layout, relation)
    for table in tables:
        if table.address not in layout.spaces and table.address not in too_deep:
            layout.left_out.append(f"{table.address}: no relation found to {root} or its spaces")
    return layout


def _place_extra(layout: Layout, relation: Relation) -> None:
    """A relation found after both its tables were placed: a reference when the referenced
    space does not already read the pointing one (that would be a cycle)."""
    columns = ", ".join(relation.columns)
    where = f"{relation.table}.{columns} -> {relation.referenced}"
    if relation.table == relation.referenced:
        layout.left_out.append(f"{where}: a table cannot pool or reference itself")
        return
    if relation.table not in layout.spaces or relation.referenced not in layout.spaces:
        return
    if relation.referenced in _reads_directly(layout, relation.table):
        layout.left_out.append(
            f"{where}: {relation.table} already reads {relation.referenced} through another "
            "column (a space reads another once)"
        )
        return
    if _reads(layout, relation.referenced, relation.table):
        layout.left_out.append(
            f"{where}: {relation.referenced} already reads {relation.table}, so reading it back "
            "would be a cycle"
        )
        return
    layout.links.append(Link(relation, "reference"))


def _reads_directly(layout: Layout, reader: str) -> list[str]:
    """The spaces `reader` pools as children or reads as references."""
    return [
        link.relation.table if link.kind == "child" else link.relation.referenced
        for link in layout.links
        if (link.relation.referenced if link.kind == "child" else link.relation.table) == reader
    ]


def _reads(layout: Layout, reader: str, read: str) -> bool:
    """Whether space `reader` reads `read`, directly or through other spaces."""
    seen, stack = set(), [reader]
    while stack:
        node = stack.pop()
        if node == read:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(_reads_directly(layout, node))
    return False
