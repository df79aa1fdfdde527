"""The project's command line: ``jnet <verb>`` (python-fire, like ``monai.bundle``)."""

from __future__ import annotations

import logging
import sys

import fire

from jnet.errors import install_excepthook

__all__ = ["main"]


def _listed(value) -> list:
    """A list option as fire gives it: ``--variants "['head','bilinear']"`` is a list, ``--variants head`` a str and
    ``--resolutions 16`` an int - both one item."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def synthetic(
    out_dir: str,
    dataset: str = "prostate",
    layout: str = "decathlon",
    num_train: int = 16,
    num_test: int = 2,
    seed: int = 0,
    small: bool = False,
    templates_dir: str = "/usr/share/mricron/templates",
) -> str:
    """Write a synthetic dataset to OUT_DIR: DATASET prostate (Decathlon Task05 layout), brats (LAYOUT
    decathlon = Task01, or brats2021 = case folders) or anatomy (real Colin27 brain MRI and AAL labels from
    TEMPLATES_DIR, Debian's mricron-data, deformed per case, in the Task05 layout: one subject, not prostate);
    --small: small slices and few of them, for quick tries."""
    from jnet.tools.synthetic import DATASETS, write_synthetic

    if dataset not in DATASETS:
        sys.exit(f"ERROR: dataset must be one of {', '.join(DATASETS)}, got '{dataset}'.")
    return write_synthetic(dataset, out_dir, layout, num_train, num_test, seed, small, templates_dir)


def generate(
    configs_dir: str = "configs", bundles_dir: str = "bundles", table_file: str = "docs/bundles.md", check: bool = False
) -> None:
    """Regenerate bundles/ and the bundle table (docs/bundles.md) from configs/ (with --check: only report what is
    out of date, exit 1 if anything)."""
    from jnet.bundles.check import check_bundles
    from jnet.bundles.render import generate_bundles
    from jnet.tools.bench.table import check_bundles_table, write_bundles_table

    if check:
        differences = check_bundles(configs_dir, bundles_dir) + check_bundles_table(configs_dir, bundles_dir, table_file)
        for line in differences:
            print(line)
        if differences:
            sys.exit(1)
        print("bundles are in sync with configs/")
        return
    for name in generate_bundles(configs_dir, bundles_dir):
        print(f"generated {bundles_dir}/{name}")
    print(f"generated {write_bundles_table(configs_dir, bundles_dir, table_file)}")


def demo(work_dir: str = "demo_output", epochs: int = 50, num_train: int = 16, seed: int = 0) -> None:
    """Synthetic data -> train the 16x16 bundle with and without the head -> evaluate both -> print a table."""
    from jnet.tools.demo import run_demo

    run_demo(work_dir=work_dir, epochs=epochs, num_train=num_train, seed=seed)


def eval_metrics(epochs: int = 20, num_train: int = 16, seed: int = 0, out_file: str = "configs/eval_metrics.json", small: bool = False) -> None:
    """Measure every bundle's eval_metrics (a short training on synthetic data) into OUT_FILE; resumable. --small:
    small synthetic slices (a quick try, not figures to publish)."""
    from jnet.tools.eval_metrics import measure_eval_metrics

    measure_eval_metrics(out_file=out_file, epochs=epochs, num_train=num_train, seed=seed, small=small)


def bench(out_dir: str = "bench_output", budget_s: float = 0.5, volume_depth: int = 400, end_to_end_volumes: int = 24, training_budget_s: float = 2.0, training_before_repo: str | None = None) -> None:
    """Inference benchmark of every bundle (parameters, MACs, CPU eager/ONNX Runtime speed, memory, Jetson
    estimates): writes OUT_DIR/bench.json and OUT_DIR/bench.md and prints the table; then the peak RSS of one
    512 x 512 x VOLUME_DEPTH x 2 volume in the bundle and the runner (:func:`bench_memory`; 0: left out), written to
    OUT_DIR/volume_memory.json and .md; and END_TO_END_VOLUMES synthetic volumes through the bundle and the runner
    (:func:`bench_end_to_end`; 0: left out), OUT_DIR/end_to_end.json and .md; then every bundle's training step
    (:func:`bench_training`, TRAINING_BUDGET_S per figure; 0: left out; TRAINING_BEFORE_REPO: a checkout of an earlier
    commit measured in the same rounds), OUT_DIR/training.json and .md."""
    from jnet.tools.bench.bundles import bench_bundles
    from jnet.tools.bench.table import render_bench_table
    from jnet.tools.reports import write_report

    report = bench_bundles(budget_s=budget_s)
    write_report(out_dir, "bench", report, render_bench_table(report))
    if volume_depth:
        bench_memory(out_dir, volume_depth)
    if end_to_end_volumes:
        bench_end_to_end(out_dir, end_to_end_volumes)
    if training_budget_s:
        bench_training(out_dir, training_budget_s, training_before_repo)


def bench_training(out_dir: str = "bench_training", budget_s: float = 2.0, before_repo: str | None = None) -> None:
    """Training slices/s of every per-size bundle: its own train.json network, loss and optimizer on one batch
    (forward, multi-stage loss, backward, step), contiguous and channels_last; writes OUT_DIR/training.json and .md
    and prints the table. BEFORE_REPO: a checkout of an earlier commit (``git worktree add /tmp/before <commit>``)
    whose steps run in the same rounds, for the table's before/after columns."""
    from jnet.tools.bench.training import bench_training as run, format_training_table
    from jnet.tools.reports import write_report

    report = run(budget_s=budget_s, before_repo=before_repo)
    write_report(out_dir, "training", report, format_training_table(report))


def bench_end_to_end(out_dir: str = "bench_end_to_end", num_volumes: int = 24) -> None:
    """NUM_VOLUMES synthetic prostate volumes segmented by ``monai.bundle run inference.json`` of
    prostate_mri_lowres_32 and by its standalone runner, each one process from start-up: wall time, volumes/s, peak
    RSS; writes OUT_DIR/end_to_end.json and .md and prints the table."""
    import os

    from jnet.tools.bench.end_to_end import bench_end_to_end as run, write_end_to_end_report

    os.makedirs(out_dir, exist_ok=True)
    print(write_end_to_end_report(run(out_dir, num_volumes), out_dir), end="")


def bench_memory(out_dir: str = "bench_memory", depth: int = 400) -> None:
    """Peak RSS of segmenting one 512 x 512 x DEPTH x 2 float32 volume with prostate_mri_lowres_32: the bundle's
    ``monai.bundle run inference.json`` (num_workers 0: one process) and the standalone runner, each as MB of peak
    per MB of input between 64 slices and DEPTH, and the constant; writes OUT_DIR/volume_memory.json and .md and prints the table."""
    from jnet.tools.bench.volume_memory import bench_volume_memory, write_volume_memory_report

    print(write_volume_memory_report(bench_volume_memory(out_dir, depth), out_dir), end="")


def bench_processes(
    out_dir: str = "bench_processes",
    dataset_dir: str | None = None,
    processes: int = 2,
    epochs: int = 10,
    batch_size: int = 4,
    publish: bool = False,
) -> None:
    """Wall time of training and evaluation in 1 vs PROCESSES processes (torchrun; gloo on CPU, one GPU per process
    where there are GPUs): writes OUT_DIR/processes.json and OUT_DIR/processes.md and prints the table. --publish:
    also docs/results/processes.json and the table of docs/multi_gpu.md rendered from it (run from the repository)."""
    from jnet.tools.bench.processes import bench_processes as run, format_processes_table, publish_processes

    report = run(out_dir, dataset_dir, processes, epochs, batch_size)
    print(format_processes_table(report))
    if publish:
        print(f"published {publish_processes(report)} and its table in docs/multi_gpu.md")


def sweep(
    work_dir: str = "sweep_output",
    dataset: str = "prostate",
    dataset_dir: str | None = None,
    dataset_layout: str | None = None,
    setting: str = "bundle",
    resolutions: tuple = (16, 32, 64, 128),
    variants: tuple | None = None,
    factor_resolutions: tuple = (16, 32),
    seeds: int = 3,
    single_seed_from: int = 64,
    epochs: int = 40,
    val_interval: int = 5,
    batch_size: int | None = None,
    features: int | None = None,
    reference: bool = True,
    num_train: int = 16,
    data_seed: int = 0,
    remeasure_speed: bool = False,
    revalidate_cache: bool = False,
) -> None:
    """Resolution sweep and ablation: every variant at every input size, each run the bundle's own train.json merged
    with the variant's override files (configs/ablation/), on the same cached data (DATASET_DIR in either layout, or
    a synthetic default); JSON, Markdown tables and plots in WORK_DIR; resumable. --setting paper: the public J-Net
    code's task (binary whole gland, BCE, nearest input; prostate). --variants: default every variant but the
    reference (--reference). --remeasure_speed: measure the inference cost again without retraining.
    --revalidate_cache: after a code change, keep the finished runs if the volumes made now equal the cached ones.
    --dataset anatomy: real Colin27 anatomy (jnet synthetic --dataset anatomy) through the prostate bundles."""
    from jnet.tools.sweep import run_sweep
    from jnet.tools.sweep.run import DEFAULT_VARIANTS

    run_sweep(
        work_dir=work_dir,
        dataset=dataset,
        dataset_dir=dataset_dir,
        dataset_layout=dataset_layout,
        setting=setting,
        resolutions=tuple(int(r) for r in _listed(resolutions)),
        variants=tuple(_listed(variants)) if variants is not None else DEFAULT_VARIANTS,
        factor_resolutions=tuple(int(r) for r in _listed(factor_resolutions)),
        seeds=seeds,
        single_seed_from=single_seed_from,
        epochs=epochs,
        val_interval=val_interval,
        batch_size=batch_size,
        features=features,
        reference=reference,
        num_train=num_train,
        data_seed=data_seed,
        remeasure_speed=remeasure_speed,
        revalidate_cache=revalidate_cache,
    )


def learning_curve(
    bundles: tuple | None = None,
    epochs: int = 40,
    val_interval: int = 1,
    num_train: int = 16,
    data_seed: int = 0,
    work_dir: str = "learning_curve_output",
    out_file: str = "docs/results/learning_curve.json",
    small: bool = False,
    threads: int | None = None,
    note: str | None = None,
    rederive: bool = False,
) -> None:
    """Epochs for a usable model: train BUNDLES (default every bundle, e.g. "['prostate_mri_lowres_16']") by their own
    train.json on the sweep's synthetic default for EPOCHS, validated every VAL_INTERVAL epochs; the val_mean_dice
    curve, per-class Dice and the first epoch that meets the rule (every class's Dice >= 0.1, val_mean_dice >= 90 %
    of the run's best) into OUT_FILE (merged per bundle; `jnet generate` puts them in the READMEs), the table in
    WORK_DIR/learning_curve.md. THREADS: the trainings' OMP_NUM_THREADS (1 is faster on a busy machine); NOTE: a
    remark on the machine or the run, kept in OUT_FILE. --rederive: derive the usable epochs in OUT_FILE again from
    its stored curves with the current rule (no training)."""
    from jnet.tools.learning_curve import measure_learning_curves, rederive_usable

    if rederive:
        rederive_usable(out_file)
        return

    measure_learning_curves(
        bundles=[str(b) for b in _listed(bundles)] if bundles is not None else None,
        epochs=epochs,
        val_interval=val_interval,
        num_train=num_train,
        data_seed=data_seed,
        work_dir=work_dir,
        out_file=out_file,
        small=small,
        threads=threads,
        note=note,
    )


def publish(sweep_dir: str = "sweep_output", bench_dir: str = "bench_output", other_sweep_dirs: tuple = ()) -> None:
    """Write docs/results.md (+ docs/results/) from SWEEP_DIR/sweep.json, the sweep's head figures as the bundles'
    eval_metrics (configs/eval_metrics.json, bundles regenerated) and, from BENCH_DIR/bench.json, the Jetson
    estimates of docs/jetson.md; OTHER_SWEEP_DIRS (e.g. "['sweep_brats']") add their section and bundles'
    eval_metrics. Prints every target and whether it is met."""
    from jnet.tools.sweep.publish import publish_results

    published = publish_results(sweep_dir, bench_dir, other_sweep_dirs=tuple(_listed(other_sweep_dirs)))
    for what, met, numbers in published["checks"]:
        print(f"{'met    ' if met else 'NOT MET'} {what}: {numbers}")
    print("eval_metrics from the sweep:", ", ".join(published["eval_metrics_from_sweep"]) or "none")


def export(
    bundle_dir: str, out_dir: str = "deploy", model_file: str | None = None, opset: int = 17, overrides: dict | str | None = None, max_batch: int = 32
) -> None:
    """Deployment kit of a trained bundle in OUT_DIR: model.onnx (input `image`, output `pred`, dynamic batch; opset
    13 for TensorRT 8.2 / JetPack 4.6), deploy.json, the runner folder jnet_runner/ (numpy + nibabel + ONNX Runtime/TensorRT) and
    build_engine.sh (trtexec). OVERRIDES: config values the weights were trained with, e.g. "{'features': 4}"."""
    from jnet.deploy.kit import export_kit

    for path in export_kit(bundle_dir, out_dir, model_file, opset, overrides, max_batch).values():
        print(path)


def trtexec(
    kit_dir: str = "deploy", max_batch: int = 32, fp16: bool = True, run: bool = False, record: str | None = None, device: str | None = None,
    logs: tuple | None = None, tensorrt: str = "8.2", input_size: int | None = None,
) -> None:
    """Print (with --run: run) the trtexec commands that build KIT_DIR/model.engine from KIT_DIR/model.onnx on this
    device and measure it at batch 1 and MAX_BATCH (images/s = trtexec's qps x batch). --record FILE.json --device
    "...": write what the run measured, for docs/jetson.md's measured rows (docs/results/jetson_measured/); --logs
    "['b1.log','b32.log']": from the saved output of the two measurements on a device without this package.
    --tensorrt VERSION: the TensorRT the commands are for - its workspace option (8.2, JetPack 4.6: --workspace;
    8.4 and later, e.g. 10: --memPoolSize). --input_size R: in the kit of an _any bundle, the size whose
    model_R.onnx the commands are for (default: every size's commands printed; --run/--logs: the default size)."""
    from jnet.deploy.kit import kit_trtexec

    kit_trtexec(kit_dir, max_batch, fp16, run, record, device, list(_listed(logs)) if logs else None, str(tensorrt), input_size)


def pack(
    bundle_dir: str, out_dir: str = ".", model_file: str | None = None, overrides: dict | str | None = None,
    sign: str | None = None, eval_dir: str | None = None,
) -> None:
    """Pack a trained bundle into OUT_DIR/<name>_v<version>.zip (configs, docs, LICENSE, models/model.pt and
    model.ts, large_files.yml, manifest.json of every file). OVERRIDES: config values the weights were trained
    with; SIGN: an OpenSSH Ed25519 private key that signs the manifest; EVAL_DIR: where configs/evaluate.json wrote
    its figures for these weights (default BUNDLE_DIR/eval) - they become eval_metrics only if they are of these
    weights."""
    from jnet.deploy.integrity import sha256_file
    from jnet.deploy.pack import pack_bundle

    path = pack_bundle(bundle_dir, out_dir, model_file, overrides, sign, eval_dir)
    print(f"{path}\nsha256 {sha256_file(path)}")


def unpack(zip_file: str, out_dir: str = ".", sha256: str | None = None, trusted_key: str | None = None, trust_unverified: bool = False) -> None:
    """Unpack a packed bundle into OUT_DIR/<name>/ after checking its limits, every file against its manifest, the
    manifest's signature against TRUSTED_KEY (or the zip against SHA256) and its weights; refuses a mismatch and
    leaves nothing behind. Without a key or checksum only with --trust_unverified (its configs execute code)."""
    from jnet.deploy.pack import unpack_bundle

    print(unpack_bundle(zip_file, out_dir, sha256, trusted_key, trust_unverified))


def verify(bundle_dir: str, trusted_key: str | None = None) -> None:
    """Check a bundle folder before running it: every file against manifest.json (changed, missing, unexpected),
    the signature with TRUSTED_KEY, the weights against large_files.yml and the bundle's network."""
    from jnet.deploy.pack import verify_bundle

    result = verify_bundle(bundle_dir, trusted_key)
    if result["signed"]:
        print(f"{bundle_dir}: {result['files']} files match manifest.json, signed by {trusted_key}; the weights fit the network")
    else:
        print(
            f"{bundle_dir}: {result['files']} files match manifest.json - UNSIGNED check: nothing proves who made them, and the "
            "weights were not loaded (that runs the configs' code); pass --trusted_key PUB for both"
        )


def device_check(out_dir: str = "device_check_output", device: str = "cuda", wheels: str | None = None, overrides: dict | str | None = None) -> None:
    """The GPU device check (make device-check, on a CUDA machine): for two bundles a 1-epoch training with --amp
    True, evaluation, inference on the device and on the CPU (masks compared), eager fp32/AMP images/s at batch 1
    and 32; OUT_DIR/device_check.json and .md. --wheels DIR (here, with the package index reachable): download the
    wheels that machine lacks into DIR instead (make device-wheels). --device cpu: the same steps on the CPU."""
    from jnet.checkpoints import parse_overrides
    from jnet.tools.device_check import device_check as run_check, download_wheels

    if wheels:
        download_wheels(wheels)
        return
    run_check(out_dir, device, overrides=parse_overrides(overrides))


def main() -> None:
    install_excepthook()
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING)
    verbs = {"synthetic": synthetic, "generate": generate, "demo": demo, "eval_metrics": eval_metrics, "bench": bench, "bench_memory": bench_memory, "bench_end_to_end": bench_end_to_end, "bench_training": bench_training, "bench_processes": bench_processes, "sweep": sweep, "publish": publish}
    verbs["learning_curve"] = learning_curve  # epochs for a usable model (jnet/tools/learning_curve.py)
    verbs["device_check"] = device_check  # the GPU check (jnet/tools/device_check.py)
    verbs.update({"export": export, "trtexec": trtexec, "pack": pack, "unpack": unpack, "verify": verify})  # deployment (jnet/deploy/)
    fire.Fire(verbs)


if __name__ == "__main__":
    main()
