"""REPRODUCING.md's tables say what the committed results folders hold: every cell (mean,
spread, seed count, the 16x - 1x difference) is checked against the folder's results.json."""

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Section title of REPRODUCING.md -> (results folder, training length).
TABLES = {
    "Main table, training length 128": ("reproduction/cpu_main", 128),
    "Main table, training length 512 (1 seed)": ("reproduction/cpu_main", 512),
    "FIRE ablations, training length 128": ("reproduction/cpu_ablations", 128),
}


def section_tables() -> dict:
    """Section title -> the first markdown table under it, as (header, rows of cells)."""
    text = (ROOT / "REPRODUCING.md").read_text()
    found = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title, body = section.split("\n", 1)
        lines = [line for line in body.splitlines() if line.startswith("|")]
        if lines:
            cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
            found[title.strip()] = (cells(lines[0]), [cells(line) for line in lines[2:]])
    return found


def number(text: str) -> float:
    return float(text.replace("−", "-"))


@pytest.mark.parametrize("title", list(TABLES))
def test_every_cell_is_the_committed_aggregate(title):
    folder, train_len = TABLES[title]
    tables = section_tables()
    assert title in tables, f"REPRODUCING.md has no section '## {title}' with a table"
    header, rows = tables[title]
    aggregates = json.loads((ROOT / folder / "results.json").read_text())["aggregates"]
    by_cell = {(a["row"], a["eval_len"]): a for a in aggregates if a["train_len"] == train_len}
    lengths = {i: int(m.group(1)) for i, h in enumerate(header) if (m := re.match(r"(\d+) \(\d+x\)$", h))}
    assert len(lengths) == 5, header
    checked = 0
    for row in rows:
        name = row[0]
        for i, eval_len in lengths.items():
            a = by_cell.get((name, eval_len))
            assert a is not None, f"{title}: {name} at {eval_len} is not in {folder}/results.json"
            mean, _, spread = row[i].partition(" ± ")
            assert number(mean) == round(a["loss"], 3), (title, name, eval_len, row[i], a["loss"])
            if spread:
                assert number(spread) == round(a["loss_std"], 3), (title, name, eval_len, row[i], a["loss_std"])
            else:
                assert a["n"] == 1, (title, name, eval_len, "a mean over seeds printed without its spread")
            checked += 1
        if "seeds" in header:
            assert int(row[header.index("seeds")]) == by_cell[(name, train_len)]["n"]
        first, last = by_cell[(name, train_len)]["loss"], by_cell[(name, 16 * train_len)]["loss"]
        assert abs(number(row[header.index("16x − 1x")]) - (last - first)) <= 0.0005 + 1e-9, (title, name)
    rows_in_folder = {r for r, _ in by_cell}
    assert {row[0] for row in rows} == rows_in_folder, f"{title}: rows differ from {folder}'s"
    assert checked == 5 * len(rows_in_folder)
