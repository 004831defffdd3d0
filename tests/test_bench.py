"""The benchmark harness (bench/, installed as rlkit.bench) runs end to end on tiny budgets and writes its JSON, PNG
and docs section; its suites are registered; it needs Stable-Baselines3 (the bench extra), which rlkit's core never
imports at module level."""

import ast
import configparser
import functools
import inspect
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.bench import SMOKE, Figure, Outcome, markdown_section, update_docs
from rlkit.bench.registry import LONG_SUITES, SUITES
from rlkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_figure_ratios_and_goals():
    faster = Figure("sps", "steps/s", rlkit=[200.0, 300.0, None], reference=[100.0, 100.0, 50.0], goal=">= 2.0")
    summary = faster.summary()
    assert summary["ratio_median"] == pytest.approx(2.5) and summary["ratio_min"] == pytest.approx(2.0)
    assert summary["goal_met"] is True
    slower = Figure("time", "s", rlkit=[3.0], reference=[4.0], higher_is_better=False, goal="<= 0.5").summary()
    assert slower["ratio_median"] == pytest.approx(0.75) and slower["goal_met"] is False
    assert "ratio_median" not in Figure("x", "s", rlkit=[1.0], reference=[None]).summary()


def test_figure_targets_apply_to_every_seed_of_each_side():
    final = Figure("final", "return", rlkit=[500.0, 480.0, 476.0], reference=[500.0, 16.0, None], paired=False,
                   target=">= 475").summary()
    assert final["target_met_rlkit"] is True and final["target_met_reference"] is False
    assert Figure("f", "return", rlkit=[500.0, None], reference=[], target=">= 475").summary()["target_met_rlkit"] is False


def test_unpaired_spread_is_ordered_with_negative_values():
    """Issue 18 #29: returns below zero once gave `0.38 [1.91..0.26]`: the spread is [smallest..largest]."""
    summary = Figure("final", "return", rlkit=[-150.0, -400.0], reference=[-300.0, -600.0, -1500.0],
                     paired=False).summary()
    assert summary["ratio_min"] <= summary["ratio_median"] <= summary["ratio_max"]
    assert summary["ratio_min"] == pytest.approx(0.1) and summary["ratio_max"] == pytest.approx(400 / 300)


def test_smoke_runs_give_no_verdict_on_goals():
    """Issue 18 #29: a --quick run measures nothing, so its goals are not judged ("miss" read as a result)."""
    machine = {"date": "d", "cpu": "c", "cores": 2, "torch": "t", "torch_threads": 1, "sb3": "s", "python": "p",
               "device": "cpu"}
    figures = [Figure("sps", "steps/s", rlkit=[1.0], reference=[4.0], goal=">= 2.0").summary(),
               Figure("final", "return", rlkit=[1.0], reference=[4.0], target=">= 475").summary()]
    quick = markdown_section({"suite": "s", "command": "c", "notes": "n", "figures": figures, "machine": machine,
                              "quick": True})
    assert "miss" not in quick and quick.count("not judged (smoke run)") == 2 and SMOKE in quick
    full = markdown_section({"suite": "s", "command": "c", "notes": "n", "figures": figures, "machine": machine})
    assert "**miss**" in full


def test_outcome_stability_figures():
    run = Outcome([(2500, 1.0, 100.0), (5000, 2.0, 480.0), (7500, 3.0, 300.0), (10000, 4.0, 500.0), (12500, 5.0, 490.0)])
    assert run.first_solve == (5000, 2.0) and run.final == 490.0 and run.best == 500.0
    assert run.held == pytest.approx(75.0)  # 3 of the 4 evaluations from the first solve on
    never = Outcome([(2500, 1.0, 100.0)])
    assert never.first_solve == (None, None) and never.held is None


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
def test_bench_suite_runs_end_to_end(tmp_path, suite, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path.parent)  # runs must not depend on the working directory
    out = tmp_path / "out"
    assert main(["bench", suite, "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(line.startswith(f"[{SMOKE}] ") for line in printed)  # never reads as a result
    assert main(["bench", suite, "--report", "--out", str(out), "--no-docs"]) == 0
    assert all(line.startswith(f"[{SMOKE}] ") for line in capsys.readouterr().out.splitlines())
    result = json.loads((out / f"{suite}.json").read_text())
    assert result["suite"] == suite and result["machine"]["cores"] >= 1
    assert result["figures"] and all(len(f["rlkit"]) == 1 for f in result["figures"])
    assert any("ratio_median" in f for f in result["figures"])
    assert (out / f"{suite}.png").stat().st_size > 1000
    if suite == "dqn-cartpole":
        names = [f["name"] for f in result["figures"]]
        assert any(name.startswith("final evaluation") for name in names)
        assert any("from the first solve on" in name for name in names)
        targeted = [f for f in result["figures"] if f["target"]]
        assert [f["target"] for f in targeted] == [">= 475", ">= 90"]  # final evaluation, share held
        section = markdown_section({**result, "quick": False})  # the verdicts a full run would print
        for f in targeted:  # met on a side = every one of its seeds has a value that meets the target
            threshold = float(f["target"].split()[1])
            for side in ("rlkit", "reference"):
                expected = bool(f[side]) and all(v is not None and v >= threshold for v in f[side])
                assert f[f"target_met_{side}"] is expected
            met = "yes" if f["target_met_rlkit"] else "**miss**"
            reference = "yes" if f["target_met_reference"] else "no"
            assert f"| every seed {f['target']} | {met} (reference: {reference}) |" in section
        smoke = markdown_section(result)
        assert SMOKE in smoke and "miss" not in smoke and "not judged (smoke run)" in smoke


@pytest.mark.slow
def test_bench_throughput_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    assert main(["bench", "dqn-throughput", "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    figures = json.loads((out / "dqn-throughput.json").read_text())["figures"]
    assert figures and all(v is not None and v > 0 for f in figures for v in f["rlkit"] + f["reference"])


def test_bench_rejects_bad_arguments(capsys):
    assert main(["bench", "replay", "--seeds", "0", "--no-docs"]) == 2
    assert main(["bench", "nonsense"]) == 2
    assert "unknown suite 'nonsense'" in capsys.readouterr().err
    assert main(["bench", "sacc", "--quick", "--no-docs"]) == 2  # every suite in rlkit.bench.registry.SUITES is accepted
    assert "Did you mean 'sac'" in capsys.readouterr().err


@pytest.mark.slow
def test_ris_antmaze_suite_trains_then_resumes(tmp_path, capsys, monkeypatch):
    """The RIS vs SAC + HER suite trains both configs as separate processes to a budget and, run again with a
    larger one, resumes them from their checkpoints: the second half is trained, nothing is repeated."""
    from rlkit.bench.suites import ris

    out = tmp_path / "out"
    budgets = ris.RIS_TASKS["ris-antmaze"].budgets
    total, eval_every, shrink = budgets[True]
    monkeypatch.setitem(budgets, True, (total // 2, eval_every, shrink))
    assert main(["bench", "ris-antmaze", "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    printed = capsys.readouterr().out
    assert "ris seed 0: exit 0" in printed and "sac_her seed 0: exit 0" in printed
    assert json.loads((out / "ris-antmaze.json").read_text())["complete"] is True
    monkeypatch.setitem(budgets, True, (total, eval_every, shrink))
    assert main(["bench", "ris-antmaze", "--seeds", "1", "--quick", "--out", str(out), "--no-docs"]) == 0
    printed = capsys.readouterr().out
    assert "--resume" in printed and "ris seed 0: exit 0" in printed and "sac_her seed 0: exit 0" in printed
    result = json.loads((out / "ris-antmaze.json").read_text())
    names = [f["name"] for f in result["figures"]]
    assert any(n.startswith(f"AntMazeU test task: success rate at {total:,}") for n in names)
    assert any(n.startswith("AntMazeU training goals") for n in names)
    for algo in ("ris", "sac_her"):
        records = [json.loads(line)
                   for line in (out / "runs-quick" / f"{algo}_s0" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if r["kind"] == "eval"] == [0, eval_every, total]
        assert any(r["kind"] == "train" and r["step"] > total // 2 for r in records)  # trained after resuming
        assert all(r["success"] in (0.0, 1.0) for r in records if r["kind"] == "episode")


def test_run_parallel_passes_one_sigint_on_and_reports_failures(tmp_path):
    """SIGTERM (or Ctrl-C) reaching the suite is passed on to each run once, as SIGINT (the runs have their own
    sessions, so a terminal's Ctrl-C does not reach them twice: a second SIGINT means 'stop without a
    checkpoint' to rlkit's loop); a run that exits with an error is named."""
    import os
    import signal
    import sys
    import threading

    from rlkit.bench.suites.ris import _run_parallel

    child = ("import signal, sys, time\n"
             "count = []\n"
             "signal.signal(signal.SIGINT, lambda *a: count.append(1))\n"
             "open(sys.argv[1] + '.ready', 'w').close()\n"
             "deadline = time.time() + 2\n"
             "while time.time() < deadline: time.sleep(0.05)\n"
             "open(sys.argv[1], 'w').write(str(len(count)))\n")
    commands = [(f"run {i}", [sys.executable, "-c", child, str(tmp_path / f"sigints{i}")], tmp_path / f"{i}.log")
                for i in range(2)]

    def stop_when_ready():
        while not all((tmp_path / f"sigints{i}.ready").exists() for i in range(2)):
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_ready, daemon=True).start()
    finished, failed = _run_parallel(commands, jobs=2)
    assert finished is False and failed == []
    assert [(tmp_path / f"sigints{i}").read_text() for i in range(2)] == ["1", "1"]
    finished, failed = _run_parallel([("bad", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "bad.log")], 1)
    assert finished is True and failed == ["bad"]


# ------------------------------------------------------------------ the package, its registry, its optional dependency


def test_registry_lists_every_suite_module_with_one_signature():
    """``rlkit bench`` reads rlkit.bench.registry: every module under bench/suites/ provides a suite there, and every
    suite runs as ``run(seeds, out, quick, threads)``."""
    import rlkit.bench.suites as suites

    modules = {f"rlkit.bench.suites.{m.name}" for m in pkgutil.iter_modules(suites.__path__)}
    runs = [s.run.func if isinstance(s.run, functools.partial) else s.run for s in SUITES.values()]
    assert {run.__module__ for run in runs} == modules
    for name, suite in SUITES.items():
        inspect.signature(suite.run).bind([0], Path("out"), True, 1)
        assert suite.notes and (name in LONG_SUITES) == suite.long
    assert LONG_SUITES == {"sac-her-fetch", "ris-antmaze", "ris-pointmaze", "dt"}


def test_suite_notes_name_files_that_exist():
    """The notes printed under each table (docs/benchmarks.md) name configs that exist."""
    for name, suite in SUITES.items():
        for ref in re.findall(r"configs/[\w.-]+\.yaml", suite.notes):
            assert (ROOT / ref).is_file(), f"{name}: {ref}"


@pytest.mark.parametrize("argv", [["bench", "replay", "--seeds", "1", "--quick"], ["bench", "all", "--seeds", "1"]])
def test_bench_without_sb3_says_how_to_install_it(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # `import stable_baselines3` now fails
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--no-docs"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()  # nothing ran, nothing written
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlkit: error: ")
    assert "pip install 'rlkit-toolkit[bench]'" in lines[0]


def _module_level_imports(tree: ast.AST) -> set[str]:
    """Modules imported when the file is imported: everything but the bodies of functions."""
    found, todo = set(), list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        todo.extend(ast.iter_child_nodes(node))
    return found


def test_core_never_imports_sb3_at_module_level():
    """rlkit's core (rlkit/, envs/, agents/) and the bench package itself import Stable-Baselines3 inside functions
    only: read from the source, and proved by importing every module with SB3 made unimportable."""
    for folder in ("rlkit", "envs", "agents", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            imports = _module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
            assert not {m for m in imports if m.split(".")[0] == "stable_baselines3"}, path
    code = ("import importlib, pkgutil, sys\n"
            "sys.modules['stable_baselines3'] = None\n"
            "names = []\n"
            "for package in ('rlkit', 'rlkit.envs', 'rlkit.agents', 'rlkit.bench'):\n"
            "    path = importlib.import_module(package).__path__\n"
            "    names += [m.name for m in pkgutil.walk_packages(path, package + '.')]\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(len(names))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 30  # every module, not an empty walk


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _requirements(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")}


def test_sb3_is_an_extra_that_bench_and_dev_include():
    """SB3 is not installed with rlkit; the sb3 extra has it, bench has sb3's packages, dev (``make test``) bench's."""
    config = _setup_cfg()
    extras = {name: _requirements(config["options.extras_require"][name]) for name in ("sb3", "bench", "dev")}
    assert any(r.startswith("stable-baselines3") for r in extras["sb3"])
    assert extras["sb3"] <= extras["bench"] <= extras["dev"]
    assert not any(r.startswith("stable-baselines3") for r in _requirements(config["options"]["install_requires"]))


def test_bench_folder_installs_as_rlkit_bench():
    """bench/ maps to rlkit.bench (package_dir), and each of its package folders is listed in setup.cfg's packages."""
    config = _setup_cfg()
    package_dir = dict(line.split(" = ") for line in _requirements(config["options"]["package_dir"]))
    assert package_dir["rlkit.bench"] == "bench"
    folders = {".".join(["rlkit", *p.parent.relative_to(ROOT).parts]) for p in (ROOT / "bench").rglob("__init__.py")}
    assert folders == {"rlkit.bench", "rlkit.bench.suites"}
    assert folders <= _requirements(config["options"]["packages"])
    import rlkit.bench

    assert Path(rlkit.bench.__file__).resolve().parent == ROOT / "bench"
