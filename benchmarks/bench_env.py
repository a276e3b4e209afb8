"""The Gymnasium environments against the engine they wrap (issue 20), measured in one run.

    python benchmarks/bench_env.py [--world coinrun] [--envs 8] [--frames 8] [--steps 25] [--rounds 3]

Prints a table of two comparisons, each timed in alternating rounds (so load on the machine hits
both sides alike) and reported as the median round:
- GenieVectorEnv with --envs sub-environments (one batched MaskGIT pass per step) against --envs
  GenieEnvs stepped in turn (Gymnasium's SyncVectorEnv): frames/s of each, and whether their frames
  are identical (they must be: same seeds, same actions);
- one GenieEnv (as gymnasium.make returns it) against World.step on the same world: ms per frame
  and the environment's overhead in percent.
"""
from __future__ import annotations

import argparse
import statistics
import time

import gymnasium
import numpy as np

import genie_play.env  # noqa: F401 -- registers the ids
from genie_play import World
from genie_play.devices import set_threads


def time_vector(env, actions: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """Seconds to step `env` through actions (frames, envs) after a reset(seed=0), and its observations."""
    obs = [env.reset(seed=0)[0]]
    t0 = time.perf_counter()
    for step_actions in actions:
        obs.append(env.step(step_actions)[0])
    return time.perf_counter() - t0, obs


def time_single(step, actions: np.ndarray) -> float:
    t0 = time.perf_counter()
    for a in actions:
        step(int(a))
    return time.perf_counter() - t0


class _TimedWorld:
    """The world with `step` replaced by a timed call, everything else passed through."""

    def __init__(self, world: World, step) -> None:
        self._world, self.step = world, step

    def __getattr__(self, name: str):
        return getattr(self._world, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="coinrun", help="world name or path (default: the bundled coinrun)")
    ap.add_argument("--envs", type=int, default=8, help="sub-environments")
    ap.add_argument("--frames", type=int, default=8, help="frames per round")
    ap.add_argument("--steps", type=int, default=25, help="MaskGIT steps per frame")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    set_threads()
    env_id, kwargs = "genie_play/World-v0", {"world": args.world, "steps": args.steps, "max_steps": 10**6}
    vector = gymnasium.make_vec(env_id, num_envs=args.envs, vectorization_mode="vector_entry_point", **kwargs)
    singles = gymnasium.make_vec(env_id, num_envs=args.envs, vectorization_mode="sync", **kwargs)
    world = World.load(args.world)
    world.sampling = {"steps": args.steps}
    single = gymnasium.make(env_id, **{**kwargs, "world": world})  # the same World: env.step vs World.step
    actions = np.random.default_rng(0).integers(0, world.num_actions, (args.frames, args.envs))
    inside = []  # World.step's share of each GenieEnv.step, timed in the same call

    def timed_world_step(action: int, _step=world.step) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return _step(action)
        finally:
            inside.append(time.perf_counter() - t0)

    single.unwrapped.world = _TimedWorld(world, timed_world_step)
    vector_s, singles_s, env_s, world_s, overhead_s, identical = [], [], [], [], [], True
    for _ in range(args.rounds + 1):  # the first round warms up (kernels, buffers) and is dropped
        seconds, vector_obs = time_vector(vector, actions)
        vector_s.append(seconds)
        seconds, singles_obs = time_vector(singles, actions)
        singles_s.append(seconds)
        identical &= all(np.array_equal(a, b) for a, b in zip(vector_obs, singles_obs))
        single.reset(seed=0)
        inside.clear()
        env_s.append(time_single(single.step, actions[:, 0]))
        overhead_s.append(env_s[-1] - sum(inside))
        world.reset(vector_obs[0][0])
        world_s.append(time_single(world.step, actions[:, 0]))
    med = lambda xs: statistics.median(xs[1:])  # noqa: E731
    frames = args.frames * args.envs
    vec_fps, sync_fps = frames / med(vector_s), frames / med(singles_s)
    env_ms, world_ms = med(env_s) / args.frames * 1e3, med(world_s) / args.frames * 1e3
    print(f"world: {world.path}  device: {world.device_description}  plan: {world.plan.summary()}  "
          f"MaskGIT steps: {args.steps}  rounds: {args.rounds} x {args.frames} frames")
    print("| what | frames/s | ms per frame |")
    print("|---|---|---|")
    print(f"| GenieVectorEnv, {args.envs} sub-environments (one batched pass) | {vec_fps:.1f} | {1e3 / vec_fps:.1f} |")
    print(f"| {args.envs} GenieEnvs stepped in turn (SyncVectorEnv) | {sync_fps:.1f} | {1e3 / sync_fps:.1f} |")
    print(f"| World.step | {1e3 / world_ms:.1f} | {world_ms:.2f} |")
    print(f"| GenieEnv.step (gymnasium.make) | {1e3 / env_ms:.1f} | {env_ms:.2f} |")
    overhead_ms = med(overhead_s) / args.frames * 1e3
    print(f"| GenieEnv.step minus the World.step inside it (same calls) | | {overhead_ms:.3f} |")
    print(f"vector / in turn: {vec_fps / sync_fps:.2f}x  GenieEnv overhead over World.step: "
          f"{(env_ms / world_ms - 1) * 100:+.1f}% (separate rounds), {overhead_ms / world_ms * 100:.2f}% "
          f"(same calls)  identical frames (vector vs in turn): {identical}")
    for env in (vector, singles, single):
        env.close()


if __name__ == "__main__":
    main()
