"""``multi_gpu_train.json`` / ``multi_gpu_evaluate.json`` under ``torchrun``: 2 CPU processes (gloo backend) on a tiny
synthetic dataset, compared with the single-process commands.

What can be compared, and how:

- Training with 2 processes is NOT the same computation as training with 1: each rank trains on its own shard of
  the volumes (DistributedSampler, padded to equal length), draws its own random slices and flips, normalises
  with its own BatchNorm batch statistics, and the optimizer takes half the steps on a twice larger batch. So the
  trained weights differ from a single-process run by construction, and no tolerance on their Dice would mean
  anything on a 2-epoch run. What must hold exactly is checked instead: the ranks report the same validation
  metrics (gathered across ranks), the ranks trained on different shards (different losses), and the best
  metric the 2-process validation reported equals the single-process ``evaluate.json`` score of the checkpoint
  it saved, to float32 rounding (1e-6). That equality also proves the gradients were synchronised: rank 1 scored
  its share of the validation volumes with its own copy of the weights, so if DDP had not kept the copies
  identical, its volumes' Dice (and so the mean) would differ from rank 0's saved model.
- Evaluation of a fixed checkpoint IS the same computation: the 2-process metrics files must hold the same
  volumes (3 - an odd number, so a padding duplicate from ``even_divisible=True`` would show) with the same
  values as the single-process files.

The network starts from weights drawn from N(0, 0.5): the untrained (and a briefly trained) J-Net predicts
background everywhere on this data, Dice 0.0 for every volume, which would make all of the equalities above hold
by accident. These weights predict foreground in scattered places, so every volume gets its own non-zero Dice.

torchrun needs nothing special on this machine (``--standalone`` rendezvous on localhost); where the host name
does not resolve, gloo is pointed at the loopback device (``GLOO_SOCKET_IFNAME``).
"""

import csv
import glob
import json
import math
import os
import re
import socket
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import BUNDLE_16, BUNDLES, REPO, TINY_OVERRIDES, run_bundle
from jnet.bundles.parse import bundle_parser
from jnet.tools.bundle_commands import bundle_command
from jnet.bundles.matrix import bundle_specs
from jnet.distributed import end_process_group, torchrun_env
from jnet.errors import InputError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NPROC = 2
TRAIN = ["configs/train.json", "configs/multi_gpu_train.json"]
EVALUATE = ["configs/train.json", "configs/evaluate.json"]
MULTI_EVALUATE = EVALUATE + ["configs/multi_gpu_evaluate.json"]
# 2 folds of the 6 tiny volumes: 3 train, 3 validation - odd, so 2 ranks get 2 and 1 (even_divisible=False)
OVERRIDES = {**TINY_OVERRIDES, "num_folds": 2}
METRIC_LINE = re.compile(r"Epoch\[(\d+)\] Metrics -- val_mean_dice: (\S+) val_mean_jaccard: (\S+)")
BEST_LINE = re.compile(r"Key metric: val_mean_dice best value: (\S+) at epoch: (\d+)")
LOSS_LINE = re.compile(r"Epoch: (\d+)/\d+, Iter: \d+/\d+ -- train_loss: (\S+)")


def distributed_env() -> dict:
    return torchrun_env(threads=1)  # 2 processes on 2 cores


# A rank aborted by libstdc++ ("terminate called without an active exception", SIGABRT) at shut-down was seen in
# full-suite runs, the last one after the configs had gained a barrier: the DistributedDataParallel wrapper kept the
# process group alive past destroy_process_group, into interpreter shut-down (jnet.distributed.end_process_group,
# tested below). Every torchrun run here must succeed on its first attempt.


def run_torchrun(config_files: list[str], log_dir: str, bundle_dir: str = BUNDLE_16, **overrides) -> tuple[subprocess.CompletedProcess, dict[int, str]]:
    """``torchrun --standalone --nproc_per_node=2 -m monai.bundle run ...`` from the bundle folder, as the README
    has it; each rank's output goes to its own file under ``log_dir`` (``--redirects 3``). Returns the result and
    every rank's stdout; any failure fails the test."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    command = [torchrun, "--standalone", f"--nproc_per_node={NPROC}", "--log-dir", log_dir, "--redirects", "3"]
    command += bundle_command(config_files, overrides)[1:]  # drop the interpreter: "-m monai.bundle run ..."
    result = subprocess.run(command, cwd=bundle_dir, capture_output=True, text=True, timeout=600, env=distributed_env())
    logs = {}
    for rank in range(NPROC):
        files = glob.glob(os.path.join(log_dir, "*", "attempt_0", str(rank), "stdout.log"))
        logs[rank] = open(files[0]).read() if files else ""
    if result.returncode != 0:
        errors = [open(f).read()[-2000:] for f in glob.glob(os.path.join(log_dir, "*", "attempt_0", "*", "stderr.log"))]
        pytest.fail(f"torchrun failed ({result.returncode}):\n{result.stderr[-2000:]}\n" + "\n".join(errors))
    return result, logs


def read_rows(path: str) -> list[tuple[str, list[float]]]:
    """A MetricsSaver ``*_raw.csv`` as (volume, per-class values) rows, duplicates kept."""
    with open(path) as f:
        return [(row["filename"], [float(v) for k, v in row.items() if k != "filename"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory) -> str:
    """A checkpoint whose predictions give every validation volume a distinct, non-zero Dice (see the module doc)."""
    parser = bundle_parser(BUNDLE_16)
    parser["features"] = OVERRIDES["features"]
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0.0, 0.5)
    path = str(tmp_path_factory.mktemp("start") / "start.pt")
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def distributed_training(tiny_dataset, start_weights, tmp_path_factory) -> dict:
    """2-process training, 2 epochs, every rank logging (``--log_all_ranks True``) to its own file."""
    root, log_dir = str(tmp_path_factory.mktemp("trained_ddp")), str(tmp_path_factory.mktemp("torchrun_train_logs"))
    _, logs = run_torchrun(
        TRAIN, log_dir, bundle_root=root, dataset_dir=tiny_dataset,
        epochs=2, finetune=True, pretrained_file=start_weights, log_all_ranks=True, **OVERRIDES,
    )
    errors = {f: open(f).read() for f in glob.glob(os.path.join(log_dir, "*", "attempt_0", "*", "stderr.log"))}
    return {"root": root, "logs": logs, "stderr": errors}


def test_channels_last_training_gives_ddp_gradients_with_its_weights_strides(distributed_training):
    """The bundles train in channels_last (the backbone's weights; ``jnet.networks.on_device``): DDP's reducer warns
    when a gradient's strides differ from its bucket's (it did for the head's 3x1x2x2 weights in channels_last)."""
    assert len(distributed_training["stderr"]) == NPROC
    for path, text in distributed_training["stderr"].items():
        assert "Grad strides do not match bucket view strides" not in text, path


@pytest.fixture(scope="module")
def single_evaluation(distributed_training, tiny_dataset, tmp_path_factory) -> str:
    """``evaluate.json`` in one process on the checkpoint the 2-process training saved; its metrics folder."""
    out = str(tmp_path_factory.mktemp("eval_single"))
    result = run_bundle(BUNDLE_16, EVALUATE, bundle_root=distributed_training["root"], dataset_dir=tiny_dataset, output_dir=out, **OVERRIDES)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_training_writes_one_model_from_rank_0_loadable_without_ddp(distributed_training):
    models = os.path.join(distributed_training["root"], "models")
    assert "model.pt" in os.listdir(models)
    # one best-model file; besides it only the resume checkpoint of train.json (if the config keeps one), no partials
    # and the training record of that model (rank 0 writes it with the model: jnet.provenance)
    assert [f for f in os.listdir(models) if f not in ("model.pt", "model_training.json") and not f.endswith("_resume.pt")] == []
    state = torch.load(os.path.join(models, "model.pt"), weights_only=True)
    parser = bundle_parser(BUNDLE_16)
    parser["features"] = OVERRIDES["features"]
    assert list(state) == list(parser.get_parsed_content("network_def").state_dict())  # no DDP "module." prefix
    events = glob.glob(os.path.join(distributed_training["root"], "eval", "events.out.tfevents.*"))
    assert events, "no TensorBoard logs"
    assert len({os.path.basename(e).split(".")[-2] for e in events}) == 1  # every event file from one process (pid)


def test_ranks_agree_on_validation_and_trained_different_shards(distributed_training):
    logs = distributed_training["logs"]
    metrics = {rank: METRIC_LINE.findall(log) for rank, log in logs.items()}
    assert [epoch for epoch, _, _ in metrics[0]] == ["1", "2"], logs[0][-2000:]
    assert metrics[1] == metrics[0]  # the gathered metrics: the same on every rank, every epoch
    best = {rank: BEST_LINE.findall(log)[-1] for rank, log in logs.items()}
    assert best[1] == best[0]  # full precision
    assert float(best[0][0]) > 0.01  # not the trivial all-background 0.0
    losses = {rank: [float(v) for _, v in LOSS_LINE.findall(log)] for rank, log in logs.items()}
    assert len(losses[0]) == len(losses[1]) == 2  # 3 volumes padded to 2 per rank, batch 2: one step per epoch
    assert all(math.isfinite(v) for v in losses[0] + losses[1])
    assert losses[0][0] != losses[1][0]  # each rank saw its own shard (same seed, same start weights)


def test_distributed_validation_equals_single_process_evaluation_of_its_model(distributed_training, single_evaluation):
    reported = float(BEST_LINE.findall(distributed_training["logs"][0])[-1][0])
    with open(os.path.join(single_evaluation, "metrics.csv")) as f:
        evaluated = dict(row for row in csv.reader(f))
    assert float(evaluated["val_mean_dice"]) == pytest.approx(reported, abs=1e-6)
    assert len(read_rows(os.path.join(single_evaluation, "val_mean_dice_raw.csv"))) == 3


def test_distributed_evaluation_writes_one_set_of_metrics_equal_to_single_process(
    distributed_training, single_evaluation, tiny_dataset, tmp_path
):
    out = str(tmp_path / "eval_ddp")
    _, logs = run_torchrun(
        MULTI_EVALUATE, str(tmp_path / "logs"), bundle_root=distributed_training["root"], dataset_dir=tiny_dataset,
        output_dir=out, **OVERRIDES,
    )
    assert sorted(os.listdir(out)) == sorted(os.listdir(single_evaluation))  # one file of each, written by rank 0
    for metric in ("val_mean_dice", "val_mean_jaccard"):
        single = read_rows(os.path.join(single_evaluation, f"{metric}_raw.csv"))
        distributed = read_rows(os.path.join(out, f"{metric}_raw.csv"))
        assert sorted(n for n, _ in distributed) == sorted(n for n, _ in single)  # the same 3 volumes, none twice
        for name, values in single:
            assert dict(distributed)[name] == pytest.approx(values, abs=1e-6), name
        assert len({tuple(v) for _, v in single}) == 3 and max(max(v) for _, v in single) > 0.01
    assert METRIC_LINE.search(logs[0]) and not METRIC_LINE.search(logs[1])  # only rank 0 logs by default


def test_the_any_size_bundle_trains_and_evaluates_under_torchrun(tiny_dataset, tmp_path):
    """prostate_mri_lowres_any with 2 processes: each iteration another input size, so some head levels get no
    gradient in an iteration (DistributedDataParallel with find_unused_parameters, which multi_gpu_train.json sets
    for this bundle); then a 2-process evaluation at --input_size 64 scores every validation volume once."""
    bundle = os.path.join(BUNDLES, "prostate_mri_lowres_any")
    root = str(tmp_path / "root")
    _, logs = run_torchrun(TRAIN, str(tmp_path / "train_logs"), bundle_dir=bundle, bundle_root=root, dataset_dir=tiny_dataset,
                           epochs=2, **{**OVERRIDES, "batch_size": 1})
    iterations = re.findall(r"Epoch: \d/2, Iter: \d+/\d+ -- train_loss", logs[0])
    assert len(iterations) >= 3  # sizes 16, 32, 64 at least: iterations whose unused head levels DDP had to skip
    assert torch.load(os.path.join(root, "models", "model.pt"), weights_only=True)["supported_sizes"].tolist() == [16, 32, 64, 128]
    out = str(tmp_path / "eval")
    run_torchrun(EVALUATE + ["configs/multi_gpu_evaluate.json"], str(tmp_path / "eval_logs"), bundle_dir=bundle, bundle_root=root,
                 dataset_dir=tiny_dataset, output_dir=out, input_size=64, **OVERRIDES)
    rows = read_rows(os.path.join(out, "val_mean_dice_raw.csv"))
    assert len(rows) == len({name for name, _ in rows}) == 3  # 2 folds of 6: 3 validation volumes, each once


def test_process_benchmark_writes_its_table_and_scores_the_same_model_alike(tiny_dataset, start_weights, tmp_path):
    """``python -m jnet bench_processes`` (docs/multi_gpu.md's table) on tiny data: every row measured from its
    own log, and the 1- and 2-process evaluations of one model give the same Dice (a non-zero one: the start
    weights predict foreground)."""
    from jnet.tools.bench.processes import bench_processes

    overrides = {**TINY_OVERRIDES, "finetune": True, "pretrained_file": start_weights}

    out = tmp_path / "bench"
    try:
        report = bench_processes(str(out), tiny_dataset, processes=NPROC, epochs=1, batch_size=2, overrides=overrides)
    except SystemExit as failed:  # a command failed: its message names the log
        logs = "\n".join(path.read_text() for path in out.glob("*/*.log"))
        pytest.fail(f"{failed}\n{logs[-4000:]}")
    assert json.loads((out / "processes.json").read_text()) == report
    rows = [(r["command"], r["processes"], r["batch_size"]) for r in report["runs"]]
    assert rows == [("train", 1, 2), ("train", 2, 2), ("train", 2, 1), ("evaluate", 1, None), ("evaluate", 2, None)]
    for run in report["runs"]:
        assert 0 < run["engine_s"] < run["wall_s"], run
    assert os.path.isfile(out / "train_1proc_batch2" / "models" / "model.pt")
    single, distributed = report["runs"][3]["best_dice"], report["runs"][4]["best_dice"]
    assert single > 0.01 and distributed == pytest.approx(single, abs=1e-6)
    table = (out / "processes.md").read_text().splitlines()
    assert len(table) == 2 + len(rows) and f"| {single:.3f} |" in table[-1]
    for processes, batch_size in ((1, 2), (2, 0)):
        with pytest.raises(InputError, match="must be at least"):
            bench_processes(str(out), tiny_dataset, processes=processes, batch_size=batch_size)
    assert (out / "processes.json").is_file()  # a refused call leaves the last report alone


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_two_nodes(run_dir, overrides: dict) -> list[tuple[int, str, str]]:
    """Both "nodes" of the README's multi-node command; ``[(returncode, node output, rank stdout)]`` per node."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = []
    try:
        for node_rank in range(2):
            log_dir = str(run_dir / f"node{node_rank}")
            command = [torchrun, "--nnodes=2", f"--node_rank={node_rank}", "--nproc_per_node=1", "--rdzv_backend", "c10d",
                       "--rdzv_endpoint", endpoint, "--rdzv_id", "jnet-test", "--log-dir", log_dir, "--redirects", "3"]
            command += bundle_command(TRAIN, overrides)[1:]
            output = open(run_dir / f"node{node_rank}.out", "w")  # a file, not a pipe: neither node can block on it
            nodes.append((subprocess.Popen(command, cwd=BUNDLE_16, stdout=output, stderr=subprocess.STDOUT, env=distributed_env()), log_dir, output))
        for process, _, output in nodes:
            process.wait(timeout=600)
            output.close()
    finally:  # a node that failed must not leave the other waiting in the rendezvous
        for process, _, _ in nodes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = []
    for node_rank, (process, log_dir, _) in enumerate(nodes):
        files = glob.glob(os.path.join(log_dir, "*", "attempt_0", "*", "stdout.log"))
        assert len(files) <= 1, files  # one process on each node
        errors = "".join(open(f).read() for f in glob.glob(os.path.join(log_dir, "*", "attempt_0", "*", "stderr.log")))
        stdout = open(files[0]).read() if files else ""
        results.append((process.returncode, (run_dir / f"node{node_rank}.out").read_text()[-3000:] + errors[-2000:], stdout))
    return results


def test_multi_node_command_trains_across_two_nodes(tiny_dataset, start_weights, tmp_path):
    """The README's multi-node form (``--nnodes --node_rank --rdzv_backend c10d --rdzv_endpoint``), as two "machines"
    of one process each on this host, meeting at a c10d rendezvous on 127.0.0.1."""
    root = str(tmp_path / "trained")
    overrides = {"bundle_root": root, "dataset_dir": tiny_dataset, "epochs": 1, "finetune": True,
                 "pretrained_file": start_weights, "log_all_ranks": True, **OVERRIDES}
    results = _run_two_nodes(tmp_path, overrides)
    failure = "\n".join(output for code, output, _ in results if code != 0)
    assert not failure, failure
    metrics = [METRIC_LINE.findall(stdout) for _, _, stdout in results]
    assert [epoch for epoch, _, _ in metrics[0]] == ["1"] and metrics[1] == metrics[0]  # one group of 2 ranks
    assert "model.pt" in os.listdir(os.path.join(root, "models"))


def test_multi_gpu_config_without_torchrun_is_a_one_line_error(tiny_dataset, tmp_path):
    env = distributed_env()
    result = subprocess.run(
        bundle_command(TRAIN, {"bundle_root": str(tmp_path), "dataset_dir": tiny_dataset, **OVERRIDES}),
        cwd=BUNDLE_16, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR: configs/multi_gpu_train.json: RANK, LOCAL_RANK, WORLD_SIZE") and "torchrun" in last
    assert not os.path.exists(os.path.join(str(tmp_path), "models"))


def test_an_input_error_inside_the_process_group_is_each_ranks_one_line(tiny_dataset, tmp_path):
    """After ``init_process_group`` torch's own excepthook wraps ours (stderr buffered, printed with a rank prefix
    after ours returns): the line must still reach the console. Here: a 2-process evaluation before training."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    command = [torchrun, "--standalone", f"--nproc_per_node={NPROC}"]
    overrides = {**OVERRIDES, "bundle_root": str(tmp_path), "dataset_dir": tiny_dataset, "output_dir": str(tmp_path / "eval")}
    command += bundle_command(MULTI_EVALUATE, overrides)[1:]
    result = subprocess.run(command, cwd=BUNDLE_16, capture_output=True, text=True, timeout=300, env=distributed_env())
    assert result.returncode != 0
    model = os.path.join(str(tmp_path), "models", "model.pt")
    expected = f"ERROR: {model}: no such weights file (train the bundle first, or pass --model_file)."
    lines = sorted(line for line in (result.stderr + result.stdout).splitlines() if "ERROR: " in line and "no such weights" in line)
    assert lines == [f"[rank{rank}]: {expected}" for rank in range(NPROC)], result.stderr[-3000:]
    assert "jnet.errors.InputError" not in result.stderr  # no rank's traceback (torchrun adds its own failure report)


SPECS = list(bundle_specs(os.path.join(REPO, "configs")))
MAIN_ONLY, LOGGER = "$not @is_main_process", "$not (@is_main_process or @log_all_ranks)"
RANK_0_ONLY = {  # merged-config handlers that ranks > 0 leave out, by target, and the condition each carries
    "train#handlers": {"ProgressBar": MAIN_ONLY, "StatsHandler": LOGGER, "TensorBoardStatsHandler": MAIN_ONLY},
    "validate#handlers": {"StatsHandler": LOGGER, "TensorBoardStatsHandler": MAIN_ONLY, "BestModelSaver": MAIN_ONLY},
}
EVERY_RANK = {"SizeStatisticsCalibration": "$not (@per_size_stats or @per_size_norm)"}  # on by a setting of its own, on every rank (DDP then
# broadcasts rank 0's buffers, the statistics included, at the next training step)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_overrides_disable_the_intended_handlers_and_keep_train_initialize(spec):
    """Each rank-0-only handler names its condition (``is_main_process``, set per rank by the overrides), so no
    override addresses a handler by list index; and the replaced ``initialize`` must keep every step of train.json's."""
    configs = os.path.join(BUNDLES, spec.name, "configs")
    train = ConfigParser()
    train.read_config([os.path.join(configs, "train.json"), os.path.join(configs, "multi_gpu_train.json")])
    assert train["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert train["train#dataloader#sampler"] == "@train#sampler" and train["train#dataloader#drop_last"] is True
    assert train["validate#sampler"]["even_divisible"] is False
    assert train["is_main_process"] == "$dist.get_rank() == 0" and train["log_all_ranks"] is False
    assert not [key for key in json.load(open(os.path.join(configs, "multi_gpu_train.json"))) if "#handlers#" in key]
    for handlers, expected in RANK_0_ONLY.items():
        seen = set()
        for handler in train[handlers]:
            name = handler["_target_"].split(".")[-1]
            assert handler.get("_disabled_") == expected.get(name, EVERY_RANK.get(name)), (handlers, handler)
            seen.add(name)
        assert set(expected) <= seen, (handlers, seen)
    base = json.load(open(os.path.join(configs, "train.json")))["initialize"]
    for step in base:
        assert step in train["initialize"] or step.replace("@network.", "@network.module.") in train["initialize"], step
    # every rank waits for the others, then the wrapper lets go of the group before it is destroyed (the comment
    # above run_torchrun)
    assert train["finalize"] == ["$jnet.distributed.end_process_group(@network)"]

    evaluate = ConfigParser()
    evaluate.read_config([os.path.join(configs, n) for n in ("train.json", "evaluate.json", "multi_gpu_evaluate.json")])
    targets = [h["_target_"] for h in evaluate["validate#handlers"]]
    disabled = [i for i, h in enumerate(evaluate["validate#handlers"]) if "_disabled_" in h]
    assert [targets[i] for i in disabled] == ["StatsHandler"]
    assert "MetricsSaver" in targets  # on every rank: it gathers the per-volume rows, rank 0 writes them
    assert evaluate["validate#sampler"]["even_divisible"] is False
    assert evaluate["finalize"] == ["$jnet.distributed.end_process_group(@network)"]


@pytest.mark.parametrize("end", ["destroy_process_group", "end_process_group"])
def test_the_job_end_destroys_the_process_group_the_wrapper_held(end):
    """A one-process gloo group and a DistributedDataParallel wrapper that has run a training step: after
    ``destroy_process_group`` alone the group object is still alive, held by the wrapper (so it ended during
    interpreter shut-down, where a rank was aborted); after ``end_process_group`` (the configs' ``finalize``) it is
    gone, and the wrapped module still computes."""
    import weakref

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        network = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(1, 2, 3))
        network(torch.ones(1, 1, 5, 5)).sum().backward()
        group = weakref.ref(network.process_group)
        if end == "destroy_process_group":
            dist.destroy_process_group()
            assert group() is not None and not dist.is_initialized()
            return
        end_process_group(network)
        assert group() is None and not dist.is_initialized()
        assert network.module(torch.ones(1, 1, 5, 5)).shape == (1, 2, 3, 3)
        end_process_group(network)  # without a group: nothing to do
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
        plain = torch.nn.Conv2d(1, 2, 3)
        plain.logger = "a module's own attribute"
        end_process_group(plain)  # not a wrapper: the group destroyed, the module left as it is
        assert not dist.is_initialized() and plain.logger == "a module's own attribute"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
