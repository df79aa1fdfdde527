"""Train and score one sweep run with the bundle's own configs, in-process.

A run is the bundle's ``configs/train.json`` merged with a setting's and a variant's override files
(``configs/ablation/*.json``, or the bundle's ``train_baseline.json`` / ``train_bilinear.json``) and the sweep's
command-line overrides, read by ``monai.bundle.ConfigParser`` exactly as ``python -m monai.bundle run`` reads them.
Everything that decides the trained weights comes from that parser: ``network_def``, ``loss``, ``optimizer``,
``lr_scheduler``, ``train#random_transforms`` (slice sampling with the foreground share, flips, 90-degree
rotations, ``LowResInputd``), ``validate#lowres_transforms``, the trainer, the evaluator and the best-model
saver. Two things differ from a ``monai.bundle run``, neither of which changes the weights: the training and
validation datasets are ``Dataset``s over volumes cached once by the bundle's own ``volume_transforms`` (the
tensors its ``CacheDataset`` would hold; ``tests/test_sweep.py`` checks a run gives the same ``model.pt`` as the
``monai.bundle run`` command :func:`bundle_run_command` prints), and the console, TensorBoard and resume handlers
are left out.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from monai.metrics import compute_dice, compute_iou
from monai.transforms import Compose
from torch import nn

from jnet.bundles.parse import bundle_parser
from jnet.checkpoints import load_weights
from jnet.tools.bundle_commands import repo_bundle

from .data import SweepData

__all__ = [
    "ABLATION_DIR", "Variant", "VARIANTS", "SETTINGS", "QUIET_HANDLERS", "run_parser", "train_run", "predict_volume",
    "score_volumes", "bundle_run_command", "bundle_for", "run_overrides",
]

ABLATION_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "configs", "ablation")
# handlers that only report or make a run resumable: left out of sweep runs (they do not change the weights)
QUIET_HANDLERS = ("ignite.contrib.handlers.ProgressBar", "StatsHandler", "TensorBoardStatsHandler", "jnet.handlers.ResumeCheckpoint")


@dataclass(frozen=True)
class Variant:
    """One sweep variant: the override files merged after ``train.json`` and what they change.

    Args:
        name: the variant's key (``<name>@<input size>#<seed>`` in ``sweep.json``).
        config_files: override files, relative to the bundle folder (``configs/...``) or absolute.
        description: one sentence for docs/results.md.
        factor: a one-change ablation of ``head``.
        input_size: a fixed input size (the 256x256 reference), else the sweep's resolution.
        teacher: distils from the sweep's ``reference`` run (trained first; its weights are the ``--teacher_file``).
        any_size: one resolution-switchable network per seed, trained once (by the dataset's ``_any`` bundle) and
            scored at every input size of the sweep (issue 16).
    """

    name: str
    config_files: tuple[str, ...]
    description: str
    factor: bool = False
    input_size: int | None = None
    teacher: bool = False
    any_size: bool = False


def _ablation(name: str) -> str:
    return os.path.join(ABLATION_DIR, f"{name}.json")


VARIANTS = {
    v.name: v
    for v in (
        Variant("baseline", ("configs/train_baseline.json",), "no head: trained at the input resolution against the "
                "downsampled ground truth, the prediction upsampled bilinearly (the paper's comparison)"),
        Variant("bilinear", ("configs/train_bilinear.json",), "no head: the logits upsampled bilinearly and trained "
                "against the 256x256 ground truth"),
        Variant("head", (), "the bundles' `train.json`: the head with bilinear initialisation, no skips, area-"
                "downsampled input, Dice + cross-entropy (BraTS: Dice + BCE) at every level with equal weights"),
        Variant("random_init", (_ablation("random_init"),), "the head's layers start from PyTorch's random "
                "initialisation instead of exact bilinear upsampling", factor=True),
        Variant("head_skip", (_ablation("head_skip"),), "the head's output-end skip connections on", factor=True),
        Variant("bce_loss", (_ablation("bce_loss"),), "BCE-with-logits per level instead of Dice + cross-entropy",
                factor=True),
        Variant("nearest_input", (_ablation("nearest_input"),), "nearest-neighbour input downsampling instead of area "
                "averaging", factor=True),
        Variant("soft_targets", (_ablation("soft_targets"),), "soft (area-averaged) ground truth at the intermediate "
                "levels instead of nearest", factor=True),
        Variant("exp_weights", (_ablation("exp_weights"),), "level weights 1, 1/2, 1/4, ... (MONAI's `exp`) from the "
                "256x256 level down, instead of equal", factor=True),
        Variant("top_level_loss", (_ablation("top_level_loss"),), "the loss at the 256x256 level only (weights 1, 0, "
                "0, ...): the head without the multi-stage loss", factor=True),
        Variant("fixed_upsampling", (_ablation("fixed_upsampling"),), "the head frozen at bilinear upsampling: the "
                "multi-stage loss without the head's parameters", factor=True),
        Variant("distillation", (_ablation("distillation"),), "training only: distillation (KL divergence at "
                "temperature 2, weight 1) from the 256x256 reference network's soft predictions on the high-resolution "
                "slice", factor=True, teacher=True),
        Variant("super_resolution", (_ablation("super_resolution"),), "training only: a DSRL-style branch (dropped "
                "after training) reconstructs the 256x256 image from the backbone's last features (MSE, weight 0.1)",
                factor=True),
        Variant("head_paper", (_ablation("head_paper"),), "the paper's recipe at once: random initialisation, output-"
                "end skips, BCE per level with equal weights, soft intermediate targets, nearest-neighbour input"),
        Variant("any", (), "the `_any` bundles' `train.json`: one resolution-switchable network for every input size, "
                "trained once on all of them (each iteration one size, as many iterations per size as the head levels "
                "it runs: 4 : 3 : 2 : 1 at 16 / 32 / 64 / 128), one set of BatchNorm statistics per size recomputed "
                "from the current weights before each validation and save, for 2x the per-size epochs", any_size=True),
        Variant("any_uniform", (_ablation("uniform_sizes"),), "`any` with the sizes cycled one iteration each",
                any_size=True),
        Variant("any_more_64", (_ablation("more_64"),), "`any` with 8 : 6 : 5 : 1 iterations at 16 / 32 / 64 / 128 "
                "(a quarter of them at 64x64 instead of a fifth, half as many at 128x128)", any_size=True),
        Variant("any_shared_stats", (_ablation("shared_stats"),), "`any` with one set of BatchNorm statistics for every "
                "size (the running averages of training)", any_size=True),
        Variant("any_norm", (_ablation("per_size_norm"),), "`any` with one whole BatchNorm per input size (statistics "
                "and affine transform, as Resolution Switchable Networks; its statistics recomputed as the shipped ones) instead of "
                "per-size statistics", any_size=True),
        Variant("any_more_128", (_ablation("more_128"),), "`any` with 4 : 3 : 2 : 2 iterations at 16 / 32 / 64 / 128 "
                "(twice as many at 128x128: 2 in 11 instead of 1 in 10)", any_size=True),
        Variant("any_val128", (_ablation("validate_128"),), "`any` with its best epoch chosen by the validation Dice "
                "at 128x128 instead of the bundle's default size (32x32)", any_size=True),
        Variant("reference", (_ablation("reference"),), "the backbone on the 256x256 input (no downsampling, no head)",
                input_size=256),
    )
}
# a setting: override files merged before every variant's (its own cached data: they may change the labels)
SETTINGS = {
    "bundle": (),
    "paper": (_ablation("paper_setting"),),  # the public J-Net code's task: binary whole gland, BCE, nearest input
}


# the bundle family each dataset trains: the real-anatomy set (Colin27, Task05 layout) trains the prostate bundles
BUNDLE_PREFIX = {"prostate": "prostate_mri_lowres", "brats": "brats_mri_lowres", "anatomy": "prostate_mri_lowres"}


def bundle_for(dataset: str, input_size: int, any_size: bool = False) -> str:
    """The repository's bundle of ``dataset`` at ``input_size`` (the reference, 256, uses the 128 one); with
    ``any_size`` its resolution-switchable ``_any`` bundle (every size)."""
    return repo_bundle(f"{BUNDLE_PREFIX[dataset]}_{'any' if any_size else min(input_size, 128)}")


def epochs_factor(dataset: str, variant: Variant) -> float:
    """How many epochs ``variant`` trains per epoch of a per-size run: for an any-size variant its ``_any`` bundle's
    ``epochs`` over the per-size bundle's (its one training serves every size), else 1."""
    if not variant.any_size:
        return 1.0
    return float(bundle_parser(bundle_for(dataset, 16, True))["epochs"]) / float(bundle_parser(bundle_for(dataset, 16))["epochs"])


def run_overrides(config: dict, seed: int, run_dir: str | None = None, teacher_file: str | None = None, factor: float = 1.0) -> dict:
    """The command-line overrides of one run (``--key value`` of its ``monai.bundle run`` command); ``teacher_file``:
    the distillation teacher's weights (a :attr:`Variant.teacher` variant); ``factor``: its :func:`epochs_factor`
    (the sweep's ``epochs`` and ``val_interval`` are a per-size run's: an any-size run validates as many times as
    a per-size run, every ``factor x val_interval`` epochs, as its bundle does - 200 epochs, every 2nd)."""
    epochs = int(round(config["epochs"] * factor))
    overrides = {"dataset_dir": config["dataset_dir"], "num_folds": config["num_folds"], "epochs": epochs,
                 "val_interval": max(1, int(round(config["val_interval"] * factor))), "seed": seed, "num_workers": 0}
    if config.get("dataset_layout"):
        overrides["dataset_layout"] = config["dataset_layout"]
    for name in ("batch_size", "features"):
        if config.get(name) is not None:
            overrides[name] = config[name]
    if teacher_file is not None:
        overrides["teacher_file"] = teacher_file
    if run_dir is not None:
        overrides["bundle_root"] = run_dir
    return overrides


def run_parser(bundle_dir: str, config_files: tuple[str, ...], overrides: dict) -> ConfigParser:
    """The bundle's train.json merged with ``config_files`` and ``overrides``, as ``monai.bundle run`` parses them."""
    parser = bundle_parser(bundle_dir, config_files)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def bundle_run_command(bundle_dir: str, config_files: tuple[str, ...], overrides: dict) -> str:
    """The ``monai.bundle run`` command, typed in ``bundle_dir``, that trains what :func:`train_run` trains (the
    ``bundle_root`` override left out: the bundle folder itself)."""
    files = ["configs/train.json", *(os.path.relpath(f, bundle_dir) if os.path.isabs(f) else f for f in config_files)]
    options = " ".join(f"--{key} {value}" for key, value in overrides.items() if key != "bundle_root")
    return f"python -m monai.bundle run --config_file \"[{','.join(repr(f) for f in files)}]\" {options}".rstrip()


def _quiet(handlers: list[dict]) -> list[dict]:
    return [h for h in handlers if h.get("_target_") not in QUIET_HANDLERS]


def _print_progress(trainer, name: str, every_s: float) -> None:
    """Print ``name: epoch e/E, iteration i/I, loss x`` at most every ``every_s`` seconds while ``trainer`` runs."""
    from ignite.engine import Events
    from tqdm import tqdm

    last = [time.monotonic()]

    def report(engine) -> None:
        if time.monotonic() - last[0] >= every_s:
            state = engine.state
            output = state.output[0] if isinstance(state.output, (list, tuple)) and state.output else state.output
            loss = output.get("loss") if isinstance(output, dict) else None
            loss_text = f", loss {float(loss):.4f}" if loss is not None else ""
            tqdm.write(f"      {name}: epoch {state.epoch}/{state.max_epochs}, iteration {state.iteration}{loss_text}")
            last[0] = time.monotonic()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, report)


def train_run(parser: ConfigParser, data: SweepData, name: str | None = None, progress_every_s: float | None = None) -> tuple[nn.Module, float]:
    """Run the parser's ``initialize`` and ``run`` (its ``SupervisedTrainer``, validating every ``val_interval``
    epochs and saving the best model to ``models/<model_name>`` under ``bundle_root``) on the cached volumes; then
    load that best model. ``progress_every_s``: print the run's epoch and loss at that interval (``name`` first).
    Returns the network (eval mode) and the training seconds."""
    parser["sweep_volumes"] = {"train": tuple(data.train_volumes), "val": tuple(data.val_volumes)}  # tuples: leaves
    parser["train#dataset"] = {"_target_": "Dataset", "data": "@sweep_volumes#train",
                               "transform": "$monai.transforms.Compose(@train#random_transforms)"}
    parser["validate#dataset"] = {"_target_": "Dataset", "data": "@sweep_volumes#val",
                                  "transform": "$monai.transforms.Compose(@validate#lowres_transforms)"}
    parser["train#handlers"] = _quiet(parser["train#handlers"])
    validate_handlers = copy.deepcopy(_quiet(parser["validate#handlers"]))
    for handler in validate_handlers:
        if handler.get("_target_") == "jnet.handlers.BestModelSaver":  # the training record names the files
            handler["provenance"]["datalist"] = data.train_datalist
    parser["validate#handlers"] = validate_handlers
    start = time.perf_counter()
    parser.get_parsed_content("initialize")
    if progress_every_s:
        _print_progress(parser.get_parsed_content("train#trainer"), name or "run", progress_every_s)
    parser.get_parsed_content("run")
    seconds = time.perf_counter() - start
    network = parser.get_parsed_content("network_def")
    load_weights(network, parser.get_parsed_content("model_file"))
    return network.eval(), seconds


def predict_volume(network: nn.Module, parser: ConfigParser, volume: dict, chunk: int = 32) -> torch.Tensor:
    """Logits ``(D, K, 256, 256)`` of one cached volume through the bundle's ``validate#lowres_transforms``."""
    lowres = Compose(parser.get_parsed_content("validate#lowres_transforms"))
    image = torch.as_tensor(lowres({"image": volume["image"].clone()})["image"]).permute(3, 0, 1, 2)  # (D, C, r, r)
    with torch.no_grad():
        return torch.cat([network(part.float()) for part in image.split(chunk)])


def _one_hot_volume(masks: torch.Tensor) -> torch.Tensor:
    """(D, K, H, W) -> (1, K, H, W, D) for MONAI's per-volume metrics."""
    return masks.permute(1, 2, 3, 0).unsqueeze(0).float()


def score_volumes(network: nn.Module, parser: ConfigParser, data: SweepData) -> dict:
    """Foreground Dice and Jaccard per class and held-out volume (``per_volume``, NaN where a volume lacks the class),
    and their means over the volumes that have the class (``dice``, ``jaccard``)."""
    dice, jaccard = [], []
    for volume in data.val_volumes:
        logits = predict_volume(network, parser, volume)
        labels = torch.as_tensor(volume["label"]).permute(3, 0, 1, 2)  # (D, L, 256, 256)
        if data.multilabel:
            pred, truth = (logits.sigmoid() > 0.5), labels.bool()
        else:
            pred = F.one_hot(logits.argmax(1), data.num_classes).permute(0, 3, 1, 2)
            truth = F.one_hot(labels[:, 0].long(), data.num_classes).permute(0, 3, 1, 2)
        y_pred, y = _one_hot_volume(pred), _one_hot_volume(truth)
        include = data.multilabel
        dice.append(compute_dice(y_pred, y, include_background=include, ignore_empty=True)[0].numpy())
        jaccard.append(compute_iou(y_pred, y, include_background=include, ignore_empty=True)[0].numpy())
    return {
        "dice": [float(v) for v in np.nanmean(np.stack(dice), axis=0)],
        "jaccard": [float(v) for v in np.nanmean(np.stack(jaccard), axis=0)],
        "per_volume": {
            name: {"dice": [float(v) for v in d], "jaccard": [float(v) for v in j]}
            for name, d, j in zip(data.val_names, dice, jaccard)
        },
    }
