"""`rlkit train` → `rlkit eval` (with video) → `rlkit plot` on a real (tiny) run directory."""

import json

import pytest
import yaml

from rlkit.cli import main


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data = {
        "env": {"id": "CartPole-v1", "num_envs": 2},
        "agent": {"name": "dqn", "hidden": [32], "eps_decay_steps": 300},
        "train": {"total_steps": 600, "learning_starts": 100, "train_every": 4, "batch_size": 16,
                  "replay": {"capacity": 2000}, "eval_every": 300, "eval_episodes": 2, "checkpoint_every": 300},
        "log": {"progress": False, "log_every": 100},
    }
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(data))
    runs = []
    for seed in (0, 1):
        run_dir = root / f"tiny-s{seed}"
        assert main(["train", str(config), f"--seed={seed}", f"--run-dir={run_dir}"]) == 0
        runs.append(run_dir)
    return runs


def test_train_writes_the_run_directory(two_runs):
    run = two_runs[0]
    for name in ("config.yaml", "metrics.jsonl", "learning_curve.png", "checkpoints/latest.pt", "checkpoints/best.pt"):
        assert (run / name).exists(), name
    assert list((run / "tb").iterdir()), "no TensorBoard events"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["seed"] == 0 and saved["train"]["total_steps"] == 600
    kinds = {json.loads(line)["kind"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert kinds == {"train", "episode", "eval"}


def test_eval_reports_mean_and_std_and_records_video(two_runs, capsys):
    assert main(["eval", str(two_runs[0]), "--episodes", "3", "--video"]) == 0
    out = capsys.readouterr().out
    assert "over 3 episodes" in out and "±" in out
    result = json.loads((two_runs[0] / "eval.json").read_text())
    assert len(result["returns"]) == 3
    videos = list((two_runs[0] / "videos").glob("*.mp4"))
    assert videos and videos[0].stat().st_size > 1000


def test_plot_aggregates_seeds(two_runs, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert main(["plot", *map(str, two_runs), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["plot", str(tmp_path)]) == 2  # not a run


def test_one_way_to_open_a_run(two_runs, tmp_path, capsys, monkeypatch):
    """open_run: what rlkit eval / export / collect and rlkit.load share (and say, word for word)."""
    import rlkit
    from rlkit.errors import RunDirError
    from rlkit.runfiles.runs import BEST, LATEST, open_run

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    run = two_runs[0]
    opened = open_run(run)
    assert (opened.run_dir, opened.weights, opened.exported, opened.config.seed) == (run, run / BEST, False, 0)
    assert open_run(run, "latest").weights == run / LATEST
    out = tmp_path / "exported"
    assert main(["export", str(run), str(out)]) == 0
    exported = open_run(out)
    assert exported.exported and exported.weights == out / "model.safetensors" and exported.config.seed == 0
    with pytest.raises(RunDirError, match="has no checkpoint yet"):  # `rlkit export` takes runs only
        open_run(out, exported=False)
    capsys.readouterr()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for path, fragment in ((a_file, "is a file; pass the run directory"), (tmp_path / "nope", "does not exist"),
                           (tmp_path, "is not an rlkit run")):
        with pytest.raises(RunDirError) as excinfo:
            rlkit.load(path)
        message = " ".join(str(excinfo.value).split())
        assert fragment in message
        for argv in (["eval", str(path)], ["collect", str(path), "--episodes", "1", "--out", "test/x-v0"]):
            assert main(argv) == 2
            assert capsys.readouterr().err.strip() == f"rlkit: error: {message}"


def test_version(capsys):
    """Issue 18 #30: `rlkit --version` prints the installed version."""
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"rlkit {version('rlkit-toolkit')}"


def test_closing_line_shows_the_success_rate_on_goal_tasks(tmp_path, capsys):
    """Issue 18 #30: on a goal task the closing line of `rlkit train` gives the last evaluation's success rate."""
    from rlkit.config import configs_dir

    assert main(["train", str(configs_dir() / "sac_her_pointgoal.yaml"), f"--run-dir={tmp_path / 'r'}",
                 "train.total_steps=300", "train.learning_starts=100", "train.eval_every=0", "train.eval_episodes=2",
                 "log.progress=false", "log.tensorboard=false", "log.plot=false", "device=cpu"]) == 0
    closing = [line for line in capsys.readouterr().out.splitlines() if line.startswith("steps ")]
    assert len(closing) == 1 and ", success rate " in closing[0], closing
    final = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"][-1]
    assert f"success rate {final['success_rate']:.2f}" in closing[0]


def test_plot_keeps_one_colour_per_label_and_bands_success_over_seeds(tmp_path):
    """Issue 18 #28: every panel gives a label the same colour, and the success panel aggregates seeds (mean
    line and a min..max band) as the return panels do."""
    from matplotlib.collections import PolyCollection

    from rlkit.runfiles.logger import learning_curve_figure

    runs = []
    for seed in range(2):
        run = tmp_path / f"goal-s{seed}"
        run.mkdir()
        records = [{"kind": "eval", "step": step, "time": step / 100, "return_mean": -50.0 + step / 100 + seed,
                    "success_rate": min(1.0, step / 2000 + 0.1 * seed)} for step in (500, 1000, 1500)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        runs.append(run)
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "step": 500, "time": 5.0, "return_mean": -20.0,
                                                     "success_rate": 0.5}) + "\n")
    fig = learning_curve_figure([*runs, other], labels=["her", "her", "ris"])
    colours = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            colours.setdefault(line.get_label().split(" (n=")[0], set()).add(line.get_color())
        assert len(ax.get_lines()) == 2  # one per label: seeds aggregate in every panel
    assert set(colours) == {"her", "ris"} and all(len(c) == 1 for c in colours.values())
    assert colours["her"] != colours["ris"]
    assert all(any(isinstance(c, PolyCollection) for c in ax.collections) for ax in fig.axes)
