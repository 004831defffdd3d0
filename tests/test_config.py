"""Strict configs and the CLI's handling of user mistakes (exit code 2, one clear line, no traceback)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlkit.agents.dqn import DQNConfig
from rlkit.cli import main
from rlkit.config import ConfigError, build_run_config, configs_dir, load_config, to_dict

REPO = Path(__file__).resolve().parent.parent


def test_default_config_loads_and_round_trips(tmp_path):
    cfg = load_config(None)
    assert cfg.env.id == "CartPole-v1"
    assert isinstance(cfg.agent, DQNConfig)
    again = build_run_config(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert again == cfg


def test_every_shipped_config_loads():
    paths = sorted(configs_dir().glob("*.yaml"))
    assert paths, "no shipped configs"
    from rlkit.training.pretrain import load_pretrain_config

    for path in paths:  # run configs, and `rlkit pretrain`'s configs (pretrain_*.yaml)
        (load_pretrain_config if path.name.startswith("pretrain_") else load_config)(path)


def test_overrides_are_typed(cartpole_data):
    cfg = build_run_config(cartpole_data, ["train.total_steps=777", "agent.double=true", "agent.lr=1e-3",
                                           "agent.hidden=[8, 8]", "train.replay.n_step=3", "seed=9"])
    assert cfg.train.total_steps == 777 and cfg.agent.double is True and cfg.agent.hidden == [8, 8]
    assert cfg.train.replay.n_step == 3 and cfg.seed == 9 and isinstance(cfg.agent.lr, float)


@pytest.mark.parametrize("override, fragment", [
    ("train.total_step=5", "Did you mean 'total_steps'"),
    ("agent.learning_rate=0.1", "unknown key 'agent.learning_rate'"),
    ("train.batch_size=big", "train.batch_size: expected an integer"),
    ("agent.double=3", "agent.double: expected true/false"),
    ("device=tpu", "device: 'tpu' is not one of"),
    ("agent.gamma=1.5", "agent.gamma must lie in (0, 1]"),
    ("train.replay.capacity=0", "train.replay.capacity must be >= 1"),
    ("agent.name=dqm", "unknown agent 'dqm'. Did you mean 'dqn'"),
    ("nonsense", "must look like key.sub=value"),
    ("trian.total_steps=3", "unknown top-level key 'trian'. Did you mean 'train'"),
])
def test_bad_values_name_the_key(cartpole_data, override, fragment):
    with pytest.raises(ConfigError) as info:
        build_run_config(cartpole_data, [override], source="my.yaml")
    assert fragment in str(info.value)
    assert str(info.value).startswith("my.yaml")


def _run_cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr()


def test_cli_missing_config_file(capsys, tmp_path):
    code, out = _run_cli(["train", str(tmp_path / "dqn_cartpol.yaml")], capsys)
    assert code == 2
    assert "does not exist" in out.err and "dqn_cartpole.yaml" in out.err


def test_cli_bad_yaml_reports_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  id: CartPole-v1\n agent: [\n")
    code, out = _run_cli(["train", str(bad)], capsys)
    assert code == 2 and "not valid YAML at line" in out.err


def test_cli_unknown_env_id(capsys, tmp_path):
    code, out = _run_cli(["train", "env.id=CartPole-v9", f"--run-dir={tmp_path / 'r'}", "log.progress=false"], capsys)
    assert code == 2 and "unknown environment id 'CartPole-v9'" in out.err and "CartPole-v1" in out.err
    code, out = _run_cli(["train", "env.id=Qwxyz-v0", f"--run-dir={tmp_path / 'r'}", "log.progress=false"], capsys)
    assert code == 2 and len(out.err) < 300 and "env.imports" in out.err  # no list of every gymnasium id


def test_cli_resume_dir_that_is_not_a_run(capsys, tmp_path):
    code, out = _run_cli(["train", "--resume", str(tmp_path)], capsys)
    assert code == 2 and "is not an rlkit run" in out.err
    code, out = _run_cli(["eval", str(tmp_path / "missing")], capsys)
    assert code == 2 and "does not exist" in out.err


def test_cli_run_dir_already_a_run_is_not_overwritten(capsys, tmp_path):
    (tmp_path / "config.yaml").write_text("precious")
    code, out = _run_cli(["train", f"--run-dir={tmp_path}"], capsys)
    assert code == 2 and "already holds a run" in out.err
    assert (tmp_path / "config.yaml").read_text() == "precious"


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rlkit.cli", "train", "agent.lr=fast", f"--run-dir={tmp_path / 'x'}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "agent.lr: expected a number, got 'fast'" in proc.stderr


def test_cli_list_shows_agents_envs_configs(capsys):
    code, out = _run_cli(["list"], capsys)
    assert code == 0
    assert "dqn" in out.out and "dqn_cartpole.yaml" in out.out and "rlkit/Pong-v0" in out.out
    from rlkit.auxiliary import AUX_MODULES

    assert f"auxiliary modules ({len(AUX_MODULES)};" in out.out and "inverse_dynamics" in out.out


# --------------------------------------------------------------------------------------
# Switching the agent from the command line (issue 18 #26)
# --------------------------------------------------------------------------------------


def test_switching_agent_name_drops_the_files_agent_keys(capsys):
    """`agent.name=sac` over the DQN file: its DQN keys (lr, hidden, ...) go with one notice, SAC starts from
    its defaults, and agent keys given as overrides stay."""
    from rlkit.agents.sac import SACConfig

    path = configs_dir() / "dqn_cartpole.yaml"
    cfg = load_config(path, ["agent.name=sac", "env.id=Pendulum-v1", "agent.gamma=0.9"])
    err = capsys.readouterr().err
    assert isinstance(cfg.agent, SACConfig) and cfg.agent.gamma == 0.9
    defaults = to_dict(SACConfig())
    assert {k: v for k, v in to_dict(cfg.agent).items() if k != "gamma"} == \
        {k: v for k, v in defaults.items() if k != "gamma"}
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "agent.name dqn -> sac" in lines[0] and "agent.lr" in lines[0]
    assert "agent.gamma" not in lines[0]
    # the same agent: nothing dropped, nothing said
    load_config(path, ["agent.name=dqn", "agent.lr=0.01"])
    assert capsys.readouterr().err == ""


def test_train_with_agent_and_env_flags_needs_no_yaml(tmp_path, capsys):
    """`rlkit train --agent sac --env Pendulum-v1`: SAC's defaults on Pendulum, no config file."""
    run = tmp_path / "run"
    assert main(["train", "--agent", "sac", "--env", "Pendulum-v1", f"--run-dir={run}", "train.total_steps=200",
                 "train.learning_starts=100", "train.eval_episodes=1", "log.progress=false", "log.tensorboard=false",
                 "log.plot=false", "device=cpu"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["agent"]["name"] == "sac" and saved["env"]["id"] == "Pendulum-v1"
    from rlkit.agents.sac import SACConfig

    assert saved["agent"] == to_dict(SACConfig())
    assert "rlkit: note" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Custom environments (issue 18 #25)
# --------------------------------------------------------------------------------------


@pytest.fixture
def user_env_package(tmp_path, monkeypatch):
    """A package of the user's own that registers two ids (one without a -vN suffix) when imported."""
    package = tmp_path / "pkgs" / "my_rlkit_envs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import gymnasium as gym\n"
        "for _id in ('MyCartPole-v0', 'MyBalance'):\n"
        "    gym.register(_id, entry_point='gymnasium.envs.classic_control.cartpole:CartPoleEnv',"
        " max_episode_steps=50)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    yield "my_rlkit_envs"
    import gymnasium as gym
    import sys as _sys

    for _id in ("MyCartPole-v0", "MyBalance"):
        gym.registry.pop(_id, None)
    _sys.modules.pop("my_rlkit_envs", None)


@pytest.mark.parametrize("env_args", [
    ["env.id=my_rlkit_envs:MyCartPole-v0"],                   # gymnasium's module:Env-vN form
    ["env.id=MyCartPole-v0", "env.imports=[my_rlkit_envs]"],  # an id registered by the user's own package
    ["env.id=MyBalance", "env.imports=[my_rlkit_envs]"],      # and one without a -vN suffix
], ids=["module-colon-id", "imports", "no-version"])
def test_train_and_eval_take_the_users_own_env_ids(user_env_package, env_args, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(configs_dir() / "dqn_cartpole.yaml"), *env_args, f"--run-dir={run}",
                 "train.total_steps=100", "train.learning_starts=50", "train.eval_episodes=1", "log.progress=false",
                 "log.tensorboard=false", "log.plot=false", "device=cpu"]) == 0, capsys.readouterr().err
    saved = yaml.safe_load((run / "config.yaml").read_text())["env"]
    assert saved["imports"] == ["my_rlkit_envs"] and ":" not in saved["id"]  # the resolved config rebuilds it
    assert main(["eval", str(run), "--episodes", "1"]) == 0


def test_env_imports_that_fail_are_one_line(capsys):
    with pytest.raises(ConfigError, match="env.imports: cannot import 'no_such_package_xyz'"):
        load_config(configs_dir() / "dqn_cartpole.yaml", ["env.id=no_such_package_xyz:Env-v0"])
