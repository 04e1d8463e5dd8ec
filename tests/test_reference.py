"""The committed reference results: their layout, every relative link of the README and docs, the README's tables
(each the output of ``segbench table``), and re-reporting each run folder from its committed tables."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from segbench.cli import main
from segbench.report import write_report

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"
KINDS = ("current", "earlier", "latency")
FOLDERS = sorted(p for kind in KINDS for p in (REFERENCE / kind).iterdir() if p.is_dir())
RUN_FOLDERS = [p for p in FOLDERS if (p / "summary.csv").is_file()]
#: Folders whose committed report.md the current code reproduces from the tables alone (the intervals that need
#: cells/ aside). The others' reports were written by earlier versions of the report (other columns, no stage
#: effects), so only their re-reading is checked.
SAME_REPORT = ["current/camvid-budget", "current/camvid-converged", "current/drive", "current/ph2-cv",
               "current/ph2-cv-all", "current/ph2-cv-all-xeon", "current/ph2-cv-converged", "current/ph2-cv-cooldown",
               "current/ph2-cv-deep", "current/ph2-label-efficiency", "current/ph2-robustness", "earlier/ph2-seeds"]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), REFERENCE / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
TABLE_MARK = re.compile(r"^<!-- segbench table (.+) -->$")
COMPARE_MARK = re.compile(r"^<!-- python scripts/compare_runs.py (.+) -->$")


def test_reference_is_split_by_kind_and_every_folder_has_its_environment():
    assert sorted(p.name for p in REFERENCE.iterdir() if p.is_dir()) == sorted(KINDS)
    assert FOLDERS
    for folder in FOLDERS:
        env = json.loads((folder / "environment.json").read_text())
        assert env.get("command"), folder
        assert env.get("git_commit") or (env.get("reconstructed") and env.get("committed_in")), folder
    index = (REFERENCE / "README.md").read_text()
    missing = [str(f.relative_to(REFERENCE)) for f in FOLDERS if f"({f.relative_to(REFERENCE)}/)" not in index]
    assert not missing, f"results/reference/README.md does not list {missing}"


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold commands, not links
    return [m.group(1) for m in LINK.finditer(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    links = [link for link in _links(doc) if not re.match(r"^[a-z]+:|^#", link)]
    broken = [link for link in links if not (doc.parent / link.split("#")[0]).exists()]
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_link_checker_finds_a_broken_link(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("[ok](x.md) [gone](missing/report.md#top) ![img](y.png) [web](https://example.org)\n"
                   "```\n[not a link](nowhere)\n```\n")
    assert _links(doc) == ["x.md", "missing/report.md#top", "y.png", "https://example.org"]
    assert not (tmp_path / "missing/report.md").exists()


def _marked_tables(text: str, mark: re.Pattern[str] = TABLE_MARK) -> list[tuple[str, str]]:
    """``(arguments, table)`` of every README table introduced by ``mark`` (``<!-- segbench table ARGS -->``)."""
    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        if m := mark.match(line):
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append((m.group(1), "\n".join(lines[i + 1 : j])))
    return out


def test_readme_tables_are_segbench_table_output(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    marked = _marked_tables((ROOT / "README.md").read_text())
    assert len(marked) >= 6
    for args, table in marked:
        assert table, f"no table after the marker of {args}"
        assert main(["table", *shlex.split(args)]) == 0
        assert capsys.readouterr().out.strip() == table, f"README table of 'segbench table {args}' differs"


def test_readme_compare_runs_tables_are_the_scripts_output():
    """Tables introduced by ``<!-- python scripts/compare_runs.py ARGS -->``: that command's output."""
    import subprocess
    import sys

    marked = _marked_tables((ROOT / "README.md").read_text(), COMPARE_MARK)
    assert marked
    for args, table in marked:
        done = subprocess.run([sys.executable, "scripts/compare_runs.py", *shlex.split(args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == table, f"README table of 'compare_runs.py {args}' differs"


def _tables(text: str) -> dict[tuple[str, ...], list[list[str]]]:
    tables, current = {}, []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables[tuple(current[0])] = current[2:]
            current = []
    return tables


def _same_cell(committed: str, reread: str) -> bool:
    """Equal, or the committed ``estimate [low, high]`` where re-reading gives the estimate alone (an interval
    that needs the cells' records)."""
    return committed == reread or (committed.endswith("]") and committed.split(" [")[0] == reread)


@pytest.mark.parametrize("folder", RUN_FOLDERS, ids=lambda p: str(p.relative_to(REFERENCE)))
def test_reference_folder_rereports_its_tables(folder, tmp_path):
    text = write_report(folder, out_dir=tmp_path, formats=("md",), figures=False)
    reread = _tables(text)
    assert reread, folder
    if str(folder.relative_to(REFERENCE)) not in SAME_REPORT:
        return
    committed = _tables((folder / "report.md").read_text())
    shared = [h for h in reread if h in committed]  # sections newer than the committed report are left out
    assert shared and shared[0] == next(iter(reread)), f"{folder.name}: the scores table is not in the committed report"
    for header in shared:
        rows = reread[header]
        assert len(rows) == len(committed[header]), f"{folder.name}: rows of {header[:3]}"
        for old, new in zip(committed[header], rows):
            assert len(old) == len(new) and all(map(_same_cell, old, new)), f"{folder.name}: {old[:3]} vs {new[:3]}"


def test_cell_comparison_catches_a_changed_number():
    assert _same_cell("0.927 [0.909, 0.940]", "0.927") and _same_cell("slic", "slic")
    assert not _same_cell("0.927 [0.909, 0.940]", "0.928") and not _same_cell("0.5", "0.6")


def test_ph2_cv_report_opens_with_its_verdict_and_a_scores_table_of_120_characters():
    """The committed report of the main reference run answers first, in a table a terminal shows whole."""
    folder = REFERENCE / "current" / "ph2-cv"
    md = (folder / "report.md").read_text()
    assert [line for line in md.splitlines() if line.startswith("## ")][0] == "## Verdict"
    verdict = (folder / "verdict.txt").read_text().splitlines()
    assert verdict and verdict[0].startswith("ph2 (Dice lesion, dataset-level, 140 test images): ")
    assert md.split("## Verdict", 1)[1].lstrip().startswith(verdict[0])
    table = [line for line in md.split("### Scores", 1)[1].split("\n#", 1)[0].splitlines() if line.startswith("|")]
    assert len(table) == 2 + 20  # header, rule, one row per method
    assert max(map(len, table)) <= 120, max(table, key=len)
    assert table[0].count(" | ") + 1 <= 10


def test_camvid_neighbours_table_is_what_the_two_folders_hold():
    """The neighbours-held-out README's table: per-image mIoU of each run and the paired difference, recomputed."""
    import numpy as np
    import pandas as pd
    import scipy.stats

    near = REFERENCE / "current" / "camvid-neighbours-held-out"
    rows = [line.split("|")[1:-1] for line in (near / "README.md").read_text().splitlines() if line.startswith("| `")]
    assert [r[0].strip() for r in rows] == ["`slic`", "`deeplab`"]
    away = pd.read_csv(REFERENCE / "current" / "camvid-converged" / "per_image.csv.gz", dtype={"image_id": str})
    held = pd.read_csv(near / "per_image.csv", dtype={"image_id": str})
    for method, here, there, diff in ([c.strip() for c in r] for r in rows):
        a = held[held["method"] == method.strip("`")].set_index("image_id")["mean_iou"]
        b = away[away["method"] == method.strip("`")].set_index("image_id")["mean_iou"]
        assert len(a) == len(b) == 101 and set(a.index) == set(b.index)
        d = (a - b.reindex(a.index)).to_numpy()
        assert np.isfinite(d).all()
        ci = scipy.stats.ttest_1samp(d, 0).confidence_interval()
        assert (f"{a.mean():.3f}", f"{b.mean():.3f}") == (here, there)
        assert diff == f"{d.mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]", (method, diff)


def test_readme_time_to_target_rows_are_the_reports():
    """The README copies the budget sweep's time-to-target table (names in backticks): every row is the report's."""
    def rows(text: str) -> list[str]:  # table rows that name a time to target
        return [line.strip().replace("`", "") for line in text.splitlines()
                if line.strip().startswith("|") and "not within the sweep" in line]

    readme = rows((ROOT / "README.md").read_text())
    report = rows((REFERENCE / "current" / "ph2-budget-sweep" / "report.md").read_text())
    assert len(readme) == 5 and all(r in report for r in readme), set(readme) - set(report)
