"""The benchmark harness runs end to end on tiny budgets and writes its JSON, PNG and docs section."""

import json

import pytest

from rlkit.bench import Figure, update_docs
from rlkit.cli import main


def test_figure_ratios_and_goals():
    faster = Figure("sps", "steps/s", rlkit=[200.0, 300.0, None], reference=[100.0, 100.0, 50.0], goal=">= 2.0")
    summary = faster.summary()
    assert summary["ratio_median"] == pytest.approx(2.5) and summary["ratio_min"] == pytest.approx(2.0)
    assert summary["goal_met"] is True
    slower = Figure("time", "s", rlkit=[3.0], reference=[4.0], higher_is_better=False, goal="<= 0.5").summary()
    assert slower["ratio_median"] == pytest.approx(0.75) and slower["goal_met"] is False
    assert "ratio_median" not in Figure("x", "s", rlkit=[1.0], reference=[None]).summary()


def test_update_docs_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written text\n")
    result = {"suite": "replay", "command": "rlkit bench replay", "notes": "n", "figures": [],
              "machine": {"date": "d", "cpu": "c", "cores": 2, "torch": "t", "torch_threads": 1, "sb3": "s",
                          "python": "p", "device": "cpu"}}
    update_docs(doc, result)
    update_docs(doc, {**result, "command": "rlkit bench replay --seeds 3"})
    text = doc.read_text()
    assert text.count("<!-- bench:replay:start -->") == 1 and "--seeds 3" in text and "hand-written text" in text


@pytest.mark.parametrize("suite", ["replay", "atari-collect", "dqn-cartpole"])
def test_bench_suite_runs_end_to_end(tmp_path, suite, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # runs must not depend on the working directory
    out = tmp_path / "out"
    assert main(["bench", suite, "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    result = json.loads((out / f"{suite}.json").read_text())
    assert result["suite"] == suite and result["machine"]["cores"] >= 1
    assert result["figures"] and all(len(f["rlkit"]) == 1 for f in result["figures"])
    assert any("ratio_median" in f for f in result["figures"])
    assert (out / f"{suite}.png").stat().st_size > 1000


@pytest.mark.slow
def test_bench_throughput_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "dqn-throughput", "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    assert json.loads((out / "dqn-throughput.json").read_text())["figures"]


def test_bench_rejects_bad_arguments(capsys):
    assert main(["bench", "replay", "--seeds", "0", "--no-docs"]) == 2
    with pytest.raises(SystemExit):
        main(["bench", "nonsense"])
