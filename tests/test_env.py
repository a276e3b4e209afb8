"""genie_play.env: worlds as Gymnasium environments (issue 20), on tiny random-weight worlds."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

import genie_play.env  # noqa: E402,F401 -- registers the ids
from gymnasium.utils.env_checker import check_env  # noqa: E402
from genie_play.env import GenieEnv, GenieVectorEnv  # noqa: E402
from genie_play.env.errors import (EnvActionError, EnvPromptError, EnvResetNeeded, EnvSettingError,  # noqa: E402
                                   EnvWorldError, RewardFunctionError)
from genie_play.errors import GenieError  # noqa: E402

FAST = {"steps": 4}  # MaskGIT rounds per frame: enough to exercise sampling, quick on a tiny world


@pytest.fixture
def make_env(tiny_world_path):
    envs = []

    def make(**kwargs):
        env = GenieEnv(world=tiny_world_path, **{**FAST, **kwargs})
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture
def make_vec(tiny_world_path):
    def make(num_envs=3, **kwargs):
        return gymnasium.make_vec("genie_play/World-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                                  world=tiny_world_path, **{**FAST, **kwargs})
    return make


def play(env, seed, actions, options=None):
    obs = [env.reset(seed=seed, options=options)[0]]
    return np.stack(obs + [env.step(a)[0] for a in actions])


def test_check_env_passes_without_warnings(tiny_world_path):
    env = gymnasium.make("genie_play/World-v0", world=tiny_world_path, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium's checker reports its findings as warnings
        check_env(env.unwrapped)  # also makes and checks render_mode human / rgb_array
    assert env.observation_space == gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    assert env.action_space == gymnasium.spaces.Discrete(8)
    env.close()


def test_same_seed_same_episode_and_noise_seed_changes_it(make_env):
    actions = [1, 2, 3, 0, 5]
    a, b = make_env(), make_env()
    first = play(a, 7, actions)
    assert np.array_equal(first, play(b, 7, actions))
    assert np.array_equal(first, play(a, 7, actions))  # the env's own history does not matter
    assert not np.array_equal(first[1:], play(make_env(noise_seed=1), 7, actions)[1:])
    assert not np.array_equal(first[1:], play(a, 7, [4, 4, 4, 4, 4])[1:])  # actions matter


def test_prompt_option_and_default_prompts(make_env, prompt_image, prompt_path):
    env = make_env()
    obs, _ = env.reset(seed=0, options={"prompt": prompt_path})
    assert np.array_equal(obs, env.world.reset(prompt_image))  # the world's view of that prompt
    seeded = {env.reset(seed=s)[0].tobytes() for s in range(12)}  # drawn from the bundled prompts
    assert len(seeded) > 1
    fixed = make_env(prompt=prompt_image)
    assert len({fixed.reset(seed=s)[0].tobytes() for s in range(3)}) == 1


def test_step_contract_reward_labels_truncation(make_env):
    calls = []

    def reward_fn(prev, frame, action):
        calls.append((prev.copy(), frame.copy(), action))
        return float(np.abs(frame.astype(int) - prev.astype(int)).mean())

    env = make_env(max_steps=3, reward_fn=reward_fn, render_mode="rgb_array")
    obs, info = env.reset(seed=1)
    assert set(info["timings_ms"]) == {"encode", "dynamics", "decode"}
    for t, action in enumerate([0, 1, 2]):
        new, reward, terminated, truncated, info = env.step(np.int64(action))
        assert reward == pytest.approx(np.abs(new.astype(int) - obs.astype(int)).mean())
        assert np.array_equal(calls[-1][0], obs) and np.array_equal(calls[-1][1], new) and calls[-1][2] == action
        assert info["action_label"] == ["right", "jump", "left"][action]
        assert info["timings_ms"]["dynamics"] > 0
        assert terminated is False and truncated is (t == 2)
        obs = new
    assert np.array_equal(env.render(), obs)
    assert make_env().reset(seed=1)[0].flags.writeable


@pytest.mark.parametrize("action", [8, -1, 1.5, "2", True, None, np.array([1, 2])])
def test_bad_action_is_refused_and_env_unchanged(make_env, action):
    env, reference = make_env(), make_env()
    play(env, 3, [1, 2])
    expected = play(reference, 3, [1, 2, 5])[-1]
    with pytest.raises(EnvActionError, match=r"action must be an integer in \[0, 8\)") as err:
        env.step(action)
    assert isinstance(err.value, gymnasium.error.InvalidAction) and isinstance(err.value, GenieError)
    assert np.array_equal(env.step(5)[0], expected)


def test_bad_prompt_world_and_settings(make_env, tiny_world_path, tmp_path):
    env = make_env()
    start = play(env, 2, [])
    missing = tmp_path / "missing.png"
    with pytest.raises(EnvPromptError, match=r"options\['prompt'\]") as err:
        env.reset(seed=5, options={"prompt": missing})
    assert isinstance(err.value, gymnasium.error.Error)
    with pytest.raises(EnvPromptError, match=r"options\['prompt'\]"):
        env.reset(options={"prompt": np.zeros((4, 4, 5), np.uint8)})
    with pytest.raises(EnvSettingError, match="unknown reset option 'promt'"):
        env.reset(options={"promt": missing})
    assert np.array_equal(env.step(1)[0], play(make_env(), 2, [1])[-1])  # untouched by the refused resets
    assert np.array_equal(env.reset(seed=2)[0], start[0])
    with pytest.raises(EnvPromptError, match=r"^prompt: "):
        make_env(prompt=missing)
    with pytest.raises(EnvWorldError, match=r"world='no-such-world'") as err:
        GenieEnv(world="no-such-world")
    assert isinstance(err.value, gymnasium.error.Error)
    with pytest.raises(EnvWorldError, match="world=None"):
        gymnasium.make("genie_play/World-v0")
    for bad, match in [({"max_steps": 0}, "max_steps"), ({"steps": 0}, "steps"), ({"temperature": -1}, "temperature"),
                       ({"reward_fn": 3}, "reward_fn must be callable"), ({"render_mode": "ansi"}, "render_mode"),
                       ({"noise_seed": -1}, "noise_seed")]:
        with pytest.raises(EnvSettingError, match=match):
            GenieEnv(world=tiny_world_path, **bad)
    with pytest.raises(EnvResetNeeded) as err:
        make_env().step(0)
    assert isinstance(err.value, gymnasium.error.ResetNeeded)


def test_failing_reward_fn_undoes_the_step(make_env):
    def reward_fn(prev, frame, action):
        if action == 6:
            raise ZeroDivisionError("no reward for six")
        return "high" if action == 7 else 1.0

    env, reference = make_env(reward_fn=reward_fn), make_env()
    play(env, 4, [1, 2])
    expected = play(reference, 4, [1, 2, 3, 0])[-2:]
    with pytest.raises(RewardFunctionError, match="reward_fn raised ZeroDivisionError: no reward for six; the step was undone"):
        env.step(6)
    with pytest.raises(RewardFunctionError, match="reward_fn must return a finite number, got 'high'"):
        env.step(7)
    assert env.elapsed_steps == 2
    assert np.array_equal(np.stack([env.step(3)[0], env.step(0)[0]]), expected)


def test_vector_env_equals_single_envs_in_one_batched_pass(make_vec, make_env, monkeypatch):
    vec = make_vec(num_envs=3, render_mode="rgb_array")
    assert isinstance(vec, GenieVectorEnv)
    assert vec.observation_space.shape == (3, 16, 16, 3) and vec.action_space == gymnasium.spaces.MultiDiscrete([8] * 3)
    passes = []
    advance = type(vec.world).advance
    monkeypatch.setattr(type(vec.world), "advance", lambda self, state, actions, rng=True: passes.append(len(actions)) or advance(self, state, actions, rng))
    actions = np.array([[1, 2, 3], [4, 5, 6], [7, 0, 1], [2, 2, 2]])
    frames = [vec.reset(seed=10)[0]]
    for step_actions in actions:
        obs, reward, terminated, truncated, info = vec.step(step_actions)
        frames.append(obs)
        assert list(info["action_label"]) == [vec.labels[a] for a in step_actions]
    assert passes == [3, 3, 3, 3]  # one MaskGIT pass of the whole batch per step
    single = make_env()
    for i in range(3):
        assert np.array_equal(np.stack(frames)[:, i], play(single, 10 + i, actions[:, i])), i
    assert np.array_equal(np.stack(vec.render()), frames[-1])


def test_vector_next_step_autoreset(make_vec, make_env):
    vec, single = make_vec(num_envs=2, max_steps=2), make_env(max_steps=2)
    vec.reset(seed=[20, 21])
    flags = [vec.step(np.array([1, 2]))[3] for _ in range(2)]
    assert [list(f) for f in flags] == [[False, False], [True, True]]
    obs, reward, terminated, truncated, _ = vec.step(np.array([5, 5]))  # actions ignored: both restart
    assert not terminated.any() and not truncated.any() and not reward.any()
    for i, seed in enumerate([20, 21]):
        play(single, seed, [1 + i, 1 + i])
        assert np.array_equal(obs[i], single.reset()[0])  # each one's generator carries on, as GenieEnv's
    assert vec.num_cohorts == 1 and list(vec.elapsed_steps) == [0, 0]
    obs, _, _, truncated, _ = vec.step(np.array([3, 4]))
    assert not truncated.any() and np.array_equal(obs[1], single.step(4)[0])


def test_vector_same_step_autoreset_reports_final_obs(make_vec, make_env):
    vec, single = make_vec(num_envs=2, max_steps=1, autoreset_mode="SameStep"), make_env(max_steps=1)
    vec.reset(seed=30)
    obs, _, _, truncated, info = vec.step(np.array([1, 6]))
    assert truncated.all() and info["_final_obs"].all()
    for i, action in enumerate([1, 6]):
        assert np.array_equal(info["final_obs"][i], play(single, 30 + i, [action])[-1])
        assert info["final_info"]["action_label"][i] == single.labels[action]  # Gymnasium's batched info layout
        assert np.array_equal(obs[i], single.reset()[0])


def test_vector_partial_reset_splits_cohorts_and_stays_exact(make_vec, make_env):
    vec, single = make_vec(num_envs=3), make_env()
    vec.reset(seed=40)
    vec.step(np.array([1, 1, 1]))
    obs, _ = vec.reset(seed=50, options={"reset_mask": np.array([False, True, False])})
    assert vec.num_cohorts == 2 and list(vec.elapsed_steps) == [1, 0, 1]
    after = vec.step(np.array([2, 3, 4]))[0]
    assert np.array_equal(after[0], play(single, 40, [1, 2])[-1])
    assert np.array_equal(after[1], play(single, 51, [3])[-1])
    assert np.array_equal(after[2], play(single, 42, [1, 4])[-1])


def test_vector_errors_leave_every_sub_environment_unchanged(make_vec, make_env):
    vec = make_vec(num_envs=2, reward_fn=lambda prev, frame, action: 1 / 0 if action == 7 else 0.0)
    with pytest.raises(EnvResetNeeded):
        vec.step(np.array([0, 0]))
    vec.reset(seed=60)
    for bad in (np.array([1, 8]), np.array([1.0, 2.0]), np.array([1, 2, 3]), [[1, 2]]):
        with pytest.raises(EnvActionError, match="actions"):
            vec.step(bad)
    with pytest.raises(RewardFunctionError, match="ZeroDivisionError"):
        vec.step(np.array([1, 7]))
    with pytest.raises(EnvPromptError, match=r"options\['prompt'\]\[1\]"):
        vec.reset(options={"prompt": [None, "/no/such/prompt.png"]})
    with pytest.raises(EnvSettingError, match="seed must be"):
        vec.reset(seed=[1, "2"])
    with pytest.raises(EnvSettingError, match="unknown reset option 'seed'"):
        vec.reset(options={"prompt": [None, None], "seed": 3})
    with pytest.raises(EnvSettingError, match="reset_mask"):
        vec.reset(options={"reset_mask": np.array([1, 0])})
    obs = vec.step(np.array([1, 2]))[0]
    single = make_env()
    assert np.array_equal(obs[0], play(single, 60, [1])[-1]) and np.array_equal(obs[1], play(single, 61, [2])[-1])
    disabled = make_vec(num_envs=2, max_steps=1, autoreset_mode="Disabled")
    disabled.reset(seed=0)
    disabled.step(np.array([0, 0]))
    with pytest.raises(EnvResetNeeded, match="reset_mask"):
        disabled.step(np.array([0, 0]))
    disabled.reset(options={"reset_mask": np.array([True, True])})
    assert disabled.step(np.array([0, 0]))[3].all()  # stepping again after the reset, truncated after its one step


def test_bundled_coinrun_world_single_and_vector_agree():
    kwargs = {"steps": 2, "max_steps": 5}
    single = gymnasium.make("genie_play/CoinRun-v0", **kwargs)
    vec = gymnasium.make_vec("genie_play/CoinRun-v0", num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    assert single.observation_space.shape == (64, 64, 3) and single.unwrapped.labels[2] == "jump"
    frames = [vec.reset(seed=3)[0]] + [vec.step(np.array([2, 3]))[0] for _ in range(2)]
    for i, action in enumerate([2, 3]):
        assert np.array_equal(np.stack(frames)[:, i], play(single, 3 + i, [action, action])), i
    single.close()
    vec.close()


def test_human_render_uses_the_player_window(make_env):
    pygame = pytest.importorskip("pygame")
    env = make_env(render_mode="human")
    env.reset(seed=0)
    surface = pygame.display.get_surface()
    assert surface is not None and surface.get_size() == (16 * 8, 16 * 8)
    env.step(1)
    assert env.render() is None
    env.close()
    assert pygame.display.get_surface() is None


def test_ids_resolve_in_a_fresh_interpreter_without_torch_until_made(tiny_world_path):
    code = (
        "import sys, gymnasium\n"
        f"env = gymnasium.make('genie_play.env:genie_play/World-v0', world={str(tiny_world_path)!r}, steps=2)\n"
        "print(env.reset(seed=0)[0].shape, gymnasium.spec('genie_play/CoinRun-v0').kwargs)\n"
        "import genie_play.env\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "(16, 16, 3) {'world': 'coinrun'}" in out.stdout
    light = subprocess.run([sys.executable, "-c", "import sys, genie_play.env; print('torch' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert light.stdout.strip() == "False", light.stderr


def test_example_agents_write_gifs(tiny_world_path, tmp_path):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "examples"))
    try:
        import agents_gif
    finally:
        sys.path.pop(0)
    written = agents_gif.main(["--world", str(tiny_world_path), "--steps", "12", "--maskgit-steps", "2", "--out", str(tmp_path)])
    from PIL import Image

    assert [p.name for p in written] == ["random.gif", "scripted.gif"]
    for path in written:
        with Image.open(path) as gif:
            assert gif.n_frames == 13
    scripted = agents_gif.scripted_policy(["right", "jump", "left"])
    assert [scripted(t, None) for t in range(11)] == [0] * 9 + [1, 0]
