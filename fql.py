# Flow Q-Learning (Park, Li, Levine, ICML 2025, arXiv:2502.02538); docs: docs/fql.md
import dataclasses
import json
import os
import random
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import ogbench
import optax
import tyro
from tensorboardX import SummaryWriter
from tqdm import tqdm

from common_flow import CriticEnsemble, VectorField, euler_sample, flow_matching_loss, polyak_update


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 0
    """seed of the experiment (Python, NumPy, JAX, environment resets)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "flow-rl"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    save_model: bool = False
    """whether to save the parameters and the resolved Args into `runs/{run_name}`"""
    load_model: str | None = None
    """path of a saved `.flax` file: skip training, load it (with the args.json beside it) and evaluate it"""

    # Environment and data
    env_id: str = "cube-single"
    """an alias (`cube-single`, `antmaze`, `puzzle-3x3-task1`, ...) or a full OGBench single-task id"""
    dataset_dir: str = "~/.ogbench/data"
    """folder holding `<dataset>.npz` and `<dataset>-val.npz` (OGBench's own folder by default)"""
    success_timing: Literal["pre", "post"] = "post"
    """OGBench success/reward timing: 'post' (from s', as in ogbench 1.1.0 used by the paper) or 'pre' (from s)"""
    offline_steps: int = 1_000_000
    """number of offline gradient steps"""
    online_steps: int = 0
    """number of online environment steps after the offline phase (one gradient step each)"""
    buffer_size: int = 2_000_000
    """replay capacity in the online phase (at least the dataset size + 1; the dataset seeds the buffer)"""
    eval_every: int = 100_000
    """evaluate every this many steps (gradient steps offline, env steps online), plus at the start and end"""
    eval_episodes: int = 50
    """number of evaluation episodes"""
    num_eval_envs: int = 10
    """number of evaluation environments stepped in lockstep with one batched policy call per step"""
    log_every: int = 5_000
    """log losses every this many steps; offline, this is also the number of gradient steps per jitted call"""

    # Algorithm specific arguments
    batch_size: int = 256
    """the batch size of each gradient step"""
    learning_rate: float = 3e-4
    """Adam learning rate of all networks"""
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layers of the BC flow and of the one-step policy"""
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layers of each critic"""
    value_layer_norm: bool = True
    """LayerNorm after each hidden activation of the critics"""
    actor_layer_norm: bool = False
    """LayerNorm after each hidden activation of the policies"""
    alpha: float | None = None
    """distillation coefficient; default: the paper's value for the task (its offline-to-online value if online)"""
    discount: float | None = None
    """discount factor; default: the paper's value for the task"""
    q_agg: Literal["mean", "min"] | None = None
    """aggregation of the two target critics in the TD target; default: the paper's value for the task"""
    tau: float = 0.005
    """target network update rate"""
    flow_steps: int = 10
    """Euler steps of the BC flow"""
    normalize_q_loss: bool = False
    """scale the Q term by 1 / mean|Q| (off in the paper; the official README suggests it for new tasks)"""


# The paper's per-environment flags (official README), used for all five tasks of each environment:
# name: (dataset type, default task, alpha, discount, q_agg, alpha for offline-to-online)
TASKS = {
    "antmaze-large": ("navigate", 1, 10.0, 0.99, "min", 10.0),
    "antmaze-giant": ("navigate", 1, 10.0, 0.995, "min", 10.0),
    "humanoidmaze-medium": ("navigate", 1, 30.0, 0.995, "mean", 100.0),
    "humanoidmaze-large": ("navigate", 1, 30.0, 0.995, "mean", 30.0),
    "antsoccer-arena": ("navigate", 4, 10.0, 0.995, "mean", 30.0),
    "cube-single": ("play", 2, 300.0, 0.99, "mean", 300.0),
    "cube-double": ("play", 2, 300.0, 0.99, "mean", 300.0),
    "scene": ("play", 2, 300.0, 0.99, "mean", 300.0),
    "puzzle-3x3": ("play", 4, 1000.0, 0.99, "mean", 1000.0),
    "puzzle-4x4": ("play", 4, 1000.0, 0.99, "mean", 1000.0),
}
SHORT_ALIASES = {"antmaze": "antmaze-large", "humanoidmaze": "humanoidmaze-medium", "antsoccer": "antsoccer-arena"}


def resolve_env_id(env_id: str) -> tuple[str, str, str]:
    """Alias or full id -> (environment name in TASKS, full single-task OGBench id, dataset name)."""
    full = re.fullmatch(r"(?P<name>[a-z0-9-]+?)-(?P<dtype>navigate|play)-singletask(-task(?P<task>[1-5]))?-v0", env_id)
    alias = re.fullmatch(r"(?P<name>[a-z0-9-]+?)(-task(?P<task>[1-5]))?", env_id)
    match = full or alias
    name = SHORT_ALIASES.get(match["name"], match["name"]) if match else None
    if name not in TASKS or (full and full["dtype"] != TASKS[name][0]):
        accepted = ", ".join(list(TASKS) + list(SHORT_ALIASES))
        raise SystemExit(
            f"error: unknown --env-id '{env_id}'. Accepted: {accepted}; optionally with '-taskN' (N in 1..5), "
            "or a full id such as cube-single-play-singletask-task2-v0."
        )
    dataset_type, default_task = TASKS[name][:2]
    task = int(match["task"] or default_task)
    return name, f"{name}-{dataset_type}-singletask-task{task}-v0", f"{name}-{dataset_type}-v0"


def load_data(env_id: str, dataset_name: str, dataset_dir: str, success_timing: str):
    """Make the training env and load the OGBench dataset (rewards relabelled for the task), with clear errors."""
    train_path = os.path.join(os.path.expanduser(dataset_dir), f"{dataset_name}.npz")
    for path in (train_path, train_path.replace(".npz", "-val.npz")):
        if not os.path.exists(path):
            raise SystemExit(
                f"error: dataset file not found: {path}\n"
                f"Download it with `python -c \"import ogbench; ogbench.download_datasets(['{dataset_name}'])\"` "
                f"or regenerate it offline with:\n"
                f"  python benchmark/make_dataset.py --dataset {dataset_name} --out-dir {dataset_dir}"
            )
        with np.load(path) as file:
            required = {"observations", "actions", "terminals", "qpos", "qvel"}
            if dataset_name.startswith(("scene", "puzzle")):
                required.add("button_states")
            if missing := required - set(file.files):
                raise SystemExit(f"error: dataset file {path} lacks the keys {sorted(missing)}")
    env, train, val = ogbench.make_env_and_datasets(env_id, dataset_path=train_path, success_timing=success_timing)
    # Keep actions strictly inside (-1, 1), as the official code does.
    for dataset in (train, val):
        dataset["actions"] = np.clip(dataset["actions"], -1 + 1e-5, 1 - 1e-5)
    keys = ("observations", "actions", "rewards", "masks", "next_observations")
    return env, {k: train[k].astype(np.float32) for k in keys}, {k: val[k].astype(np.float32) for k in keys}


# ALGO LOGIC: networks and training state
class Networks(NamedTuple):
    critic: CriticEnsemble  # Q_phi(s, a), two critics
    bc_flow: VectorField  # v_theta(s, x_t, t), trained by flow matching on dataset actions
    onestep: VectorField  # mu_omega(s, z), the policy that acts


class TrainState(NamedTuple):
    params: dict  # {"critic", "bc_flow", "onestep"}, all updated by one Adam
    target_critic: dict
    opt_state: optax.OptState


def make_networks(args: Args, action_dim: int) -> tuple[Networks, optax.GradientTransformation]:
    nets = Networks(
        critic=CriticEnsemble(args.value_hidden_dims, num_critics=2, layer_norm=args.value_layer_norm),
        bc_flow=VectorField(args.actor_hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        onestep=VectorField(args.actor_hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
    )
    return nets, optax.adam(args.learning_rate)


def init_train_state(key, nets: Networks, tx, obs_dim: int, action_dim: int) -> TrainState:
    critic_key, bc_key, onestep_key = jax.random.split(key, 3)
    obs, action, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)), jnp.zeros((1, 1))
    params = {
        "critic": nets.critic.init(critic_key, obs, action),
        "bc_flow": nets.bc_flow.init(bc_key, obs, action, t),
        "onestep": nets.onestep.init(onestep_key, obs, action),
    }
    return TrainState(params, params["critic"], tx.init(params))


def sample_actions(nets: Networks, onestep_params, observations, key):
    """The acting policy: a = clip(mu_omega(s, z)), z ~ N(0, I). Stochastic at evaluation too, as in the paper."""
    noise = jax.random.normal(key, (*observations.shape[:-1], nets.onestep.action_dim))
    return jnp.clip(nets.onestep.apply(onestep_params, observations, noise), -1.0, 1.0)


def critic_target(onestep_params, target_critic, batch, key, nets: Networks, args: Args):
    """y = r + gamma * mask * agg_i Qbar_i(s', a'), a' = clip(mu_omega(s', z)); agg is `q_agg` (mean or min)."""
    next_actions = sample_actions(nets, onestep_params, batch["next_observations"], key)
    next_q = nets.critic.apply(target_critic, batch["next_observations"], next_actions)
    next_q = next_q.min(axis=0) if args.q_agg == "min" else next_q.mean(axis=0)
    return jax.lax.stop_gradient(batch["rewards"] + args.discount * batch["masks"] * next_q)


def fql_loss(params, target_critic, batch, key, nets: Networks, args: Args):
    """Critic TD loss + BC flow-matching loss + alpha * distillation loss + Q loss, summed for one Adam step."""
    next_key, bc_key, distill_key, mse_key = jax.random.split(key, 4)
    obs, actions = batch["observations"], batch["actions"]

    # Critic: regress both critics on the TD target.
    target_q = critic_target(params["onestep"], target_critic, batch, next_key, nets, args)
    q = nets.critic.apply(params["critic"], obs, actions)
    critic_loss = jnp.mean((q - target_q) ** 2)  # mean over both critics and the batch

    # BC flow: flow matching towards the dataset actions.
    bc_flow_loss = flow_matching_loss(lambda x, t: nets.bc_flow.apply(params["bc_flow"], obs, x, t), actions, bc_key)

    # Distillation: the one-step policy regresses the clipped Euler solution of the BC flow from the same noise.
    # The target carries no gradient, so the BC flow is trained by flow matching alone.
    noise = jax.random.normal(distill_key, actions.shape)
    bc_flow_params = jax.lax.stop_gradient(params["bc_flow"])
    target_actions = euler_sample(lambda x, t: nets.bc_flow.apply(bc_flow_params, obs, x, t), noise, args.flow_steps)
    actor_actions = nets.onestep.apply(params["onestep"], obs, noise)
    distill_loss = jnp.mean((actor_actions - target_actions) ** 2)

    # Q term: maximise the mean of both critics at the clipped one-step action; the critics get no gradient.
    q_actor = nets.critic.apply(jax.lax.stop_gradient(params["critic"]), obs, jnp.clip(actor_actions, -1, 1))
    q_actor = q_actor.mean(axis=0)
    q_loss = -q_actor.mean()
    if args.normalize_q_loss:
        q_loss = q_loss / jax.lax.stop_gradient(jnp.abs(q_actor).mean())

    actor_loss = bc_flow_loss + args.alpha * distill_loss + q_loss
    mse = jnp.mean((sample_actions(nets, params["onestep"], obs, mse_key) - actions) ** 2)
    info = {
        "total_loss": critic_loss + actor_loss,
        "critic_loss": critic_loss,
        "q_mean": q.mean(),
        "q_max": q.max(),
        "q_min": q.min(),
        "actor_loss": actor_loss,
        "bc_flow_loss": bc_flow_loss,
        "distill_loss": distill_loss,
        "q_loss": q_loss,
        "q": q_actor.mean(),
        "mse": mse,  # one-step action vs dataset action, a diagnostic only
    }
    return critic_loss + actor_loss, info


def update(state: TrainState, batch, key, nets: Networks, tx, args: Args):
    grads, info = jax.grad(fql_loss, has_aux=True)(state.params, state.target_critic, batch, key, nets, args)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Polyak average from the critic *before* this step's update, as the official code does.
    target_critic = polyak_update(state.target_critic, state.params["critic"], args.tau)
    return TrainState(params, target_critic, opt_state), info


def train_chunk(state, data, data_size, key, num_steps: int, nets: Networks, tx, args: Args):
    """`num_steps` gradient steps in one compiled call; batches are drawn uniformly from data[:data_size]."""

    def step(carry, _):
        state, key = carry
        key, batch_key, update_key = jax.random.split(key, 3)
        idx = jax.random.randint(batch_key, (args.batch_size,), 0, data_size)
        state, info = update(state, jax.tree.map(lambda x: x[idx], data), update_key, nets, tx, args)
        return (state, key), info

    (state, key), infos = jax.lax.scan(step, (state, key), length=num_steps)
    return state, key, infos  # infos: one value per step, to log and to find the step of a NaN


def add_transition(data, transition, index):
    """Write one transition at `index` of the device-resident replay buffer (in place: the buffer is donated)."""
    return jax.tree.map(lambda buffer, x: buffer.at[index].set(x), data, transition)


def validation_losses(state, val_data, key, nets: Networks, args: Args):
    batch_key, loss_key = jax.random.split(key)
    idx = jax.random.randint(batch_key, (args.batch_size,), 0, val_data["observations"].shape[0])
    batch = jax.tree.map(lambda x: x[idx], val_data)
    return fql_loss(state.params, state.target_critic, batch, loss_key, nets, args)[1]


def evaluate(envs, policy, params, key, num_episodes: int, seed: int) -> dict:
    """Run `num_episodes` episodes in rounds of len(envs) environments stepped in lockstep; one policy call per step."""
    successes, returns, lengths = [], [], []
    for first in range(0, num_episodes, len(envs)):
        active_envs = envs[: min(len(envs), num_episodes - first)]
        obs = np.stack([env.reset(seed=seed + first + i)[0] for i, env in enumerate(active_envs)])
        n = len(active_envs)
        done, ep_return, ep_length, ep_success = np.zeros(n, bool), np.zeros(n), np.zeros(n, int), np.zeros(n)
        while not done.all():
            key, action_key = jax.random.split(key)
            actions = np.asarray(policy(params, obs, action_key))
            for i, env in enumerate(active_envs):
                if done[i]:
                    continue
                obs[i], reward, terminated, truncated, info = env.step(actions[i])
                ep_return[i] += reward
                ep_length[i] += 1
                ep_success[i] = info["success"]
                done[i] = terminated or truncated
        successes += ep_success.tolist()
        returns += ep_return.tolist()
        lengths += ep_length.tolist()
    return {"success": np.mean(successes), "episodic_return": np.mean(returns), "episodic_length": np.mean(lengths)}


def save_model(run_dir: str, exp_name: str, state: TrainState, args: Args) -> str:
    """Write the parameters (flax serialization, atomically) and the resolved Args beside them."""
    path = os.path.join(run_dir, f"{exp_name}.flax")
    with open(path + ".tmp", "wb") as f:
        f.write(flax.serialization.to_bytes({"params": state.params, "target_critic": state.target_critic}))
    os.replace(path + ".tmp", path)
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump(dataclasses.asdict(args), f, indent=2)
    return path


def load_model(path: str, obs_dim: int, action_dim: int) -> tuple[Args, Networks, dict]:
    """Inverse of `save_model`: the saved Args (for the architecture) and the parameters."""
    with open(os.path.join(os.path.dirname(path), "args.json")) as f:
        saved = json.load(f)
    saved_args = Args(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    nets, tx = make_networks(saved_args, action_dim)
    template = init_train_state(jax.random.PRNGKey(0), nets, tx, obs_dim, action_dim)
    with open(path, "rb") as f:
        restored = flax.serialization.from_bytes(
            {"params": template.params, "target_critic": template.params["critic"]}, f.read()
        )
    return saved_args, nets, restored["params"]


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.load_model:  # evaluate a saved model on its own task
        with open(os.path.join(os.path.dirname(args.load_model), "args.json")) as f:
            args = dataclasses.replace(args, env_id=json.load(f)["env_id"])
    name, env_id, dataset_name = resolve_env_id(args.env_id)
    online = args.online_steps > 0
    _, _, alpha, discount, q_agg, alpha_o2o = TASKS[name]
    args = dataclasses.replace(
        args,
        env_id=env_id,
        alpha=args.alpha if args.alpha is not None else (alpha_o2o if online else alpha),
        discount=args.discount if args.discount is not None else discount,
        q_agg=args.q_agg or q_agg,
    )
    print(f"env: {env_id} (dataset {dataset_name}); alpha={args.alpha}, discount={args.discount}, q_agg={args.q_agg}")

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    key = jax.random.PRNGKey(args.seed)
    key, init_key, eval_key = jax.random.split(key, 3)

    if not args.load_model:  # check the dataset first: a missing or broken file fails before anything slow
        env, train_data, val_data = load_data(env_id, dataset_name, args.dataset_dir, args.success_timing)
    eval_envs = [  # reused by every evaluation
        ogbench.make_env_and_datasets(env_id, env_only=True, success_timing=args.success_timing)
        for _ in range(min(args.num_eval_envs, args.eval_episodes))
    ]
    obs_dim = eval_envs[0].observation_space.shape[0]
    action_dim = eval_envs[0].action_space.shape[0]

    if args.load_model:
        _, nets, params = load_model(args.load_model, obs_dim, action_dim)
        policy = jax.jit(lambda p, o, k: sample_actions(nets, p["onestep"], o, k))
        result = evaluate(eval_envs, policy, params, eval_key, args.eval_episodes, seed=10**6 * (args.seed + 1))
        print(f"{env_id}: success {result['success']:.3f}, return {result['episodic_return']:.1f}")
        raise SystemExit(0)

    dataset_size = train_data["observations"].shape[0]
    print(f"dataset: {dataset_size} transitions, obs dim {obs_dim}, action dim {action_dim}")

    run_name = f"{env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.join("runs", run_name)
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            save_code=True,
        )
    writer = SummaryWriter(run_dir)
    writer.add_text(
        "hyperparameters",
        "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in vars(args).items()),
    )
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump(dataclasses.asdict(args), f, indent=2)

    # ALGO LOGIC: initialise networks; the dataset lives on the device (it seeds the replay buffer when online)
    nets, tx = make_networks(args, action_dim)
    state = init_train_state(init_key, nets, tx, obs_dim, action_dim)
    if online:
        capacity = max(args.buffer_size, dataset_size + 1)
        data = {}
        for k, v in train_data.items():  # filled on the host, so that the device holds one copy of the buffer
            data[k] = np.zeros((capacity, *v.shape[1:]), np.float32)
            data[k][:dataset_size] = v
        data = jax.device_put(data)
    else:
        data = jax.device_put(train_data)
    val_data = jax.device_put(val_data)

    chunk_fn = jax.jit(partial(train_chunk, nets=nets, tx=tx, args=args), static_argnames="num_steps")
    add_transition_fn = jax.jit(add_transition, donate_argnums=0)  # kept apart from the update so XLA never copies
    val_fn = jax.jit(partial(validation_losses, nets=nets, args=args))
    policy = jax.jit(lambda params, obs, key: sample_actions(nets, params["onestep"], obs, key))

    def log_losses(info: dict, val_info: dict, step: int):
        for k, v in info.items():
            writer.add_scalar(f"losses/{k}", float(v), step)
        writer.add_scalar("losses/val_total_loss", float(val_info["total_loss"]), step)

    def run_evaluation(step: int) -> dict:
        noise_key, reset_seed = jax.random.fold_in(eval_key, step), 10**6 * (args.seed + 1) + step  # fresh each time
        result = evaluate(eval_envs, policy, state.params, noise_key, args.eval_episodes, reset_seed)
        for k, v in result.items():
            writer.add_scalar(f"eval/{k}", v, step)
        tqdm.write(f"step {step}: eval success {result['success']:.3f}, return {result['episodic_return']:.1f}")
        return result

    def stop_on_nan(losses: np.ndarray, first_step: int, last_good: TrainState):
        bad_step = first_step + int(np.argmax(~np.isfinite(losses)))
        message = f"error: the loss became NaN or infinite at step {bad_step}."
        if args.save_model:
            message += f" Parameters from step {first_step - 1} saved to {save_model(run_dir, args.exp_name, last_good, args)}."
        writer.close()
        raise SystemExit(message)

    start_time = time.time()
    eval_result = run_evaluation(0)
    progress = tqdm(total=args.offline_steps + args.online_steps, desc="offline", smoothing=0.1)

    # Offline phase: chunks of gradient steps that end on every log and eval boundary.
    step = 0
    while step < args.offline_steps:
        num_steps = min(
            args.log_every - step % args.log_every, args.eval_every - step % args.eval_every, args.offline_steps - step
        )
        chunk_start = time.time()
        key, chunk_key, val_key = jax.random.split(key, 3)
        new_state, key, infos = chunk_fn(state, data, dataset_size, chunk_key, num_steps=num_steps)
        infos = jax.device_get(infos)
        if not np.isfinite(infos["total_loss"]).all():
            stop_on_nan(infos["total_loss"], step + 1, state)
        state, step = new_state, step + num_steps
        progress.update(num_steps)
        if step % args.log_every == 0 or step == args.offline_steps:
            log_losses({k: v[-1] for k, v in infos.items()}, val_fn(state, val_data, val_key), step)
            writer.add_scalar("charts/SPS", num_steps / (time.time() - chunk_start), step)
        if step % args.eval_every == 0 or step == args.offline_steps:
            eval_result = run_evaluation(step)
    offline_time = time.time() - start_time

    # Online phase: one environment step with the one-step policy, then one gradient step on the growing buffer.
    progress.set_description("online")
    obs, _ = env.reset(seed=args.seed)
    episode_return, episode_length = 0.0, 0
    for env_step in range(1, args.online_steps + 1):
        key, action_key, update_key, val_key = jax.random.split(key, 4)
        action = np.asarray(policy(state.params, obs[None], action_key))[0]
        next_obs, reward, terminated, truncated, info = env.step(action)
        transition = {
            "observations": np.float32(obs),
            "actions": action,
            "rewards": np.float32(reward),
            "masks": np.float32(1.0 - terminated),  # time-limit truncations bootstrap
            "next_observations": np.float32(next_obs),
        }
        index = (dataset_size + env_step - 1) % capacity  # circular: the oldest entries are overwritten first
        size = min(dataset_size + env_step, capacity)
        data = add_transition_fn(data, transition, index)
        new_state, _, infos = chunk_fn(state, data, size, update_key, num_steps=1)
        if not np.isfinite(float(infos["total_loss"][0])):
            stop_on_nan(np.asarray(infos["total_loss"]), args.offline_steps + env_step, state)
        state = new_state
        episode_return, episode_length = episode_return + reward, episode_length + 1
        obs = next_obs
        global_step = args.offline_steps + env_step
        if terminated or truncated:
            writer.add_scalar("charts/episodic_return", episode_return, global_step)
            writer.add_scalar("charts/episodic_length", episode_length, global_step)
            writer.add_scalar("charts/success", float(info["success"]), global_step)
            obs, _ = env.reset()
            episode_return, episode_length = 0.0, 0
        progress.update(1)
        if env_step % args.log_every == 0:
            log_losses(
                {k: v[-1] for k, v in jax.device_get(infos).items()}, val_fn(state, val_data, val_key), global_step
            )
            writer.add_scalar("charts/SPS", env_step / (time.time() - start_time - offline_time), global_step)
        if env_step % args.eval_every == 0 or env_step == args.online_steps:
            eval_result = run_evaluation(global_step)
    progress.close()

    if args.save_model:
        print(f"model saved to {save_model(run_dir, args.exp_name, state, args)}")
    wall_time = time.time() - start_time
    total_steps = args.offline_steps + args.online_steps
    print(
        f"{env_id}: final success {eval_result['success']:.3f} over {args.eval_episodes} episodes | "
        f"wall time {wall_time:.0f} s | {total_steps / wall_time:.1f} steps/s (evaluation and compile included)"
    )
    writer.close()
