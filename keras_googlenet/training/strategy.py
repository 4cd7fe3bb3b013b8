"""Distribution: which `tf.distribute` strategy a run uses, and who is the chief.

`auto`: MirroredStrategy when more than one GPU is visible, the default strategy otherwise.
`mirrored`: MirroredStrategy over `runtime.devices` (all GPUs when empty).
`one_device`: OneDeviceStrategy on `runtime.devices[0]` (default: the first GPU, else the CPU).
`multi_worker`: MultiWorkerMirroredStrategy, cluster and task from the TF_CONFIG variable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re

import tensorflow as tf

from keras_googlenet.errors import UserError

log = logging.getLogger("keras_googlenet")

# Exit code of a worker that stopped because another one was lost (EX_TEMPFAIL: try again).
WORKER_LOST = 75


def make_strategy(runtime) -> tf.distribute.Strategy:
    """Creates the strategy named by a `RuntimeConfig`.

    Raises:
        UserError: multi_worker without a usable TF_CONFIG, or a device that does not exist.
    """
    name, devices = runtime.strategy, list(runtime.devices)
    if name == "multi_worker":
        # First, before anything initializes TensorFlow (listing devices does): the cluster's
        # collective ops can only be configured at start-up.
        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        device = devices[0] if devices else ("/gpu:0" if gpus else "/cpu:0")
        _check_devices([device])
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        _check_devices(devices)
        return tf.distribute.MirroredStrategy(devices or None)
    raise UserError(f"runtime.strategy: unknown strategy {name!r}")


def _check_devices(devices) -> None:
    known = {d.name.split("device:")[-1].upper() for d in tf.config.list_logical_devices()}
    for device in devices:
        try:
            spec = tf.DeviceSpec.from_string(device)
        except ValueError:
            spec = None
        if spec is None or not spec.device_type:
            raise UserError(f"runtime.devices: {device!r} is not a device name (e.g. '/gpu:0')")
        if f"{spec.device_type}:{spec.device_index or 0}".upper() not in known:
            have = ", ".join(sorted(known))
            raise UserError(f"runtime.devices: no device {device!r} here (have: {have})")


def check_tf_config() -> dict:
    """The parsed TF_CONFIG; raises `UserError` when it is missing or malformed."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError(
            "runtime.strategy multi_worker needs the TF_CONFIG environment variable "
            '({"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}})'
        )
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task["type"], int(task["index"]), cluster[task["type"]]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"TF_CONFIG is not valid ({type(e).__name__}: {e})") from None
    return tf_config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder (always, except non-chief multi-workers)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """The worker processes `strategy` spans (1 without a cluster): one input pipeline each."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec()
    return max(1, sum(spec.num_tasks(job) for job in spec.jobs))


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans several worker processes."""
    return num_workers(strategy) > 1


def worker_sum(strategy: tf.distribute.Strategy, values) -> list[float]:
    """The sums of `values` over all workers, each worker counted once (not per replica).

    An all-reduce: every worker must call it at the same point of its program, or the others
    wait for it (until the cluster reports it lost, see `stop_on_lost_worker`).
    """
    local = len(strategy.extended.worker_devices)
    own = tf.constant(list(values), tf.float64)

    def contribution(ctx):  # one replica per worker brings the values, the others zeros
        return own if ctx.replica_id_in_sync_group % local == 0 else tf.zeros_like(own)

    per_replica = strategy.experimental_distribute_values_from_function(contribution)
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return [float(v) for v in total.numpy()]


@contextlib.contextmanager
def stop_on_lost_worker(strategy: tf.distribute.Strategy):
    """Turns the error a multi-worker task gets when another task dies into one line.

    A killed or crashed worker stops sending heartbeats to TensorFlow's coordination service
    (on worker 0, which MultiWorkerMirroredStrategy starts); after its heartbeat timeout (10 s
    by default) the service aborts the collective ops of every other task, which then raise
    UnavailableError (or AbortedError / DeadlineExceededError), instead of waiting forever.
    Here that error becomes `UserError` with exit code `WORKER_LOST` and what to do.
    """
    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError)
    try:
        yield
    except lost as e:
        if not is_multi_worker(strategy):
            raise
        tasks = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", e.message)))
        mine = f"/job:{strategy.cluster_resolver.task_type}/replica:0/task:"
        mine += str(strategy.cluster_resolver.task_id)
        others = [t for t in tasks if t != mine] or ["another worker"]
        message = (
            f"lost contact with {', '.join(others)} ({type(e).__name__}); this worker "
            f"({task_name(strategy)}) stopped too: start every worker again with the same "
            "command to resume from the last backup"
        )
        log.error("%s", message)
        raise UserError(message, exit_code=WORKER_LOST) from None


def task_name(strategy: tf.distribute.Strategy) -> str:
    """`worker_1` etc. for a multi-worker task, '' otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return ""
    return f"{resolver.task_type}_{resolver.task_id}"


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line for the log: the strategy's class, replicas and devices."""
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy has no device list
        devices = ()
    where = f" on {', '.join(devices)}" if devices else ""
    # TensorFlow's class names differ from the public ones (MultiWorkerMirroredStrategy is a
    # CollectiveAllReduceStrategy); name the public API.
    for public, public_name in (
        (tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
        (tf.distribute.MirroredStrategy, "MirroredStrategy"),
        (tf.distribute.OneDeviceStrategy, "OneDeviceStrategy"),
    ):
        if isinstance(strategy, public):
            name = public_name
            break
    else:
        name = "default strategy"
    return f"{name} with {strategy.num_replicas_in_sync} replica(s){where}"
