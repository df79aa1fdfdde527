"""
The bundles' pre- and post-processing steps as MONAI dictionary transforms, each a thin wrapper around the numpy
function of the processing floor (:mod:`jnet.processing`) that the standalone runner runs on a device without
MONAI. The bundle and the runner therefore share one implementation and cannot drift; these wrappers only move
data between MetaTensors and numpy, keep the affine of each grid, and record what ``Invertd`` needs to undo a
step on a prediction.

Pre-processing of an image ``(C, H, W, D)``: :class:`Reorientd` -> :class:`ZNormalized` -> :class:`SquarePadd` ->
:class:`OutputGridd` (256x256) -> :class:`LowResInputd` (the network input). Post-processing of the prediction:
:class:`Activationd` -> ``Invertd`` (undoes the invertible steps in reverse) -> :class:`AsLabelsd`, in bundle
inference as one step a slab of slices at a time (:class:`InvertToLabelsd`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys, ensure_tuple_rep

from jnet import processing as steps  # looked up per call: one implementation for the bundles and the runner
from jnet.data.layouts.brats import LAYOUTS

__all__ = [
    "Reorientd",
    "ZNormalized",
    "SquarePadd",
    "OutputGridd",
    "LowResInputd",
    "Activationd",
    "AsLabelsd",
    "InvertToLabelsd",
    "LOWRES_MODES",
    "GRID_TYPES",
]

LOWRES_MODES = steps.LOWRES_MODES
GRID_TYPES = steps.GRID_TYPES


def _numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        return (array.float() if array.dtype in (torch.bfloat16, torch.float16) else array).numpy()
    return np.asarray(array)


def _affine(array: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The affine of a MetaTensor (float64); the identity for plain arrays."""
    if isinstance(array, MetaTensor):
        return array.affine.detach().cpu().to(torch.float64).clone()  # never shared with the input's metadata
    return torch.eye(4, dtype=torch.float64)


def like_source(
    result: np.ndarray | torch.Tensor, source: torch.Tensor | np.ndarray, affine: torch.Tensor | None = None
) -> MetaTensor:
    """``result`` as a MetaTensor on ``source``'s device carrying its metadata and applied operations, with
    ``affine`` (default: ``source``'s)."""
    out = MetaTensor(result if isinstance(result, torch.Tensor) else torch.from_numpy(_torch_compatible(result)))
    if isinstance(source, MetaTensor):
        out.meta = dict(source.meta)
        out.applied_operations = list(source.applied_operations)
    out.affine = _affine(source) if affine is None else affine
    return out.to(source.device) if isinstance(source, torch.Tensor) else out


def _torch_compatible(array: np.ndarray) -> np.ndarray:
    """``array`` itself where torch can share its memory (any non-negative strides: a permuted view needs no
    copy), else a contiguous copy."""
    if all(stride >= 0 for stride in array.strides) and array.flags.writeable:
        return array
    return np.ascontiguousarray(array)


def _in_plane_step(affine: torch.Tensor, scale: Sequence[float], shift: Sequence[float]) -> torch.Tensor:
    """The affine of a new in-plane grid whose voxel ``i`` on axis ``a`` sits at old voxel ``scale[a] * i +
    shift[a]`` (axes 0 and 1; the slice axis unchanged)."""
    step = torch.eye(affine.shape[0], dtype=torch.float64)
    for axis, (s, t) in enumerate(zip(scale, shift)):
        step[axis, axis], step[axis, -1] = float(s), float(t)
    return affine @ step


def _resized_affine(affine: torch.Tensor, old: Sequence[int], new: Sequence[int]) -> torch.Tensor:
    """The affine after resizing the in-plane axes from ``old`` to ``new`` samples (pixel centres aligned as in
    ``align_corners=False``)."""
    scale = [o / n for o, n in zip(old, new)]
    return _in_plane_step(affine, scale, [(s - 1) / 2 for s in scale])


def _inverse_mode(info: dict) -> str:
    """The interpolation of an inverse resize: the recorded ``"mode"``, which ``Invertd(nearest_interp=True)``
    turns into ``"nearest"`` (for label maps) - MONAI's convention for the ``mode`` in applied operations. Label
    maps come back ``"nearest-exact"`` (centred, like the linear resize), so a forward and inverse pair are exact."""
    mode = info.get("mode", "linear")
    if isinstance(mode, (list, tuple)):  # collated, or as convert_applied_interp_mode writes a sequence
        mode = mode[0] if mode else "linear"
    return "nearest-exact" if str(mode).startswith("nearest") else "linear"


class _InvertibleStep(MapTransform, InvertibleTransform):
    """
    A step on numpy arrays whose inverse takes a prediction back to the grid before the step and restores that
    grid's affine. Subclasses implement ``_forward(array, affine, option) -> (array, affine, info)`` and
    ``_backward(array, info, orig_size) -> array``; ``option`` is the step's per-key setting (``_per_key``), ``info``
    what the inverse needs (recorded in the MetaTensor's applied operations, as ``Invertd`` expects).
    """

    def _per_key(self) -> Sequence:
        return [None] * len(self.keys)

    def _forward(self, array: np.ndarray, affine: torch.Tensor, option) -> tuple[np.ndarray, torch.Tensor, dict]:
        raise NotImplementedError

    def _backward(self, array: np.ndarray, info: dict, orig_size: Sequence[int]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, option in self.key_iterator(d, self._per_key()):
            image, affine = d[key], _affine(d[key])
            result, new_affine, info = self._forward(_numpy(image), affine, option)
            out = like_source(result, image, new_affine)
            self.push_transform(out, orig_size=tuple(image.shape[1:]), extra_info={"affine": affine.numpy(), **info})
            d[key] = out
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            op = self.pop_transform(d[key])
            info = op[TraceKeys.EXTRA_INFO]
            orig_size = [int(n) for n in np.asarray(op[TraceKeys.ORIG_SIZE]).ravel()]
            affine = torch.as_tensor(np.asarray(info["affine"], dtype=np.float64))
            d[key] = like_source(self._backward(_numpy(d[key]), info, orig_size), d[key], affine)
        return d


class Reorientd(_InvertibleStep):
    """
    Reorient channel-first ``(C, H, W, D)`` volumes to ``axcodes`` (RAS by default) by permuting and flipping
    axes (:func:`jnet.processing.reorient`); the affine follows. ``inverse`` puts a prediction back into
    the input's axis order and restores its affine.

    Args:
        keys: keys of the volumes.
        axcodes: target orientation, three letters of ``LR``, ``PA``, ``IS``.
        in_place: flip the input's axes in place and permute them as a view (:func:`jnet.processing.oriented_in_place`)
            instead of writing a reoriented copy: no second copy of the volume (inference, where nothing else holds
            the loaded volume; not behind a cache).
    """

    def __init__(self, keys: KeysCollection, axcodes: str = "RAS", in_place: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.axcodes = axcodes
        self.in_place = in_place

    def _forward(self, array: np.ndarray, affine: torch.Tensor, option) -> tuple[np.ndarray, torch.Tensor, dict]:
        forward, undo = steps.orientations(affine.numpy(), self.axcodes)
        moved = torch.as_tensor(nib.orientations.inv_ornt_aff(forward, array.shape[1:4]))
        oriented = steps.oriented_in_place(array, forward) if self.in_place else steps.apply_orientation(array, forward)
        return oriented, affine @ moved, {"undo": undo}

    def _backward(self, array: np.ndarray, info: dict, orig_size: Sequence[int]) -> np.ndarray:
        return steps.apply_orientation(array, np.asarray(info["undo"], dtype=np.float64))


class ZNormalized(MapTransform):
    """
    z-normalise images per channel (or over all channels): :func:`jnet.processing.normalize`, MONAI's
    ``NormalizeIntensity`` arithmetic (population std; a zero std is left as 1). Output float32.

    Args:
        keys: image keys.
        channel_wise: one mean and std per channel.
        nonzero: use (and change) only the non-zero voxels.
        in_place: normalise a float32 input in place (no copy of the volume; inference, not behind a cache).
    """

    def __init__(
        self,
        keys: KeysCollection,
        channel_wise: bool = True,
        nonzero: bool = False,
        in_place: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channel_wise = channel_wise
        self.nonzero = nonzero
        self.in_place = in_place

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            normalized = steps.normalize(_numpy(d[key]), self.channel_wise, self.nonzero, self.in_place)
            d[key] = like_source(normalized, d[key])
        return d


class SquarePadd(_InvertibleStep):
    """
    Pad the in-plane axes of ``(C, H, W[, D])`` arrays with zeros to a centred square ``max(H, W)``
    (:func:`jnet.processing.pad_square`), keeping the aspect ratio for the resize that follows.
    ``inverse`` crops a prediction back.

    Args:
        keys: keys of the arrays to pad (all must share the in-plane shape).
    """

    def _forward(self, array: np.ndarray, affine: torch.Tensor, option) -> tuple[np.ndarray, torch.Tensor, dict]:
        padded, pads = steps.pad_square(array)
        return padded, _in_plane_step(affine, (1, 1), (-pads[0][0], -pads[1][0])), {"pads": pads}

    def _backward(self, array: np.ndarray, info: dict, orig_size: Sequence[int]) -> np.ndarray:
        return steps.crop_square(array, np.asarray(info["pads"], dtype=np.int64).reshape(2, 2).tolist())


class OutputGridd(_InvertibleStep):
    """
    Bring square ``(C, s, s[, D])`` slices onto the network's ``size x size`` output grid
    (:func:`jnet.processing.to_grid`): ``grid="resize"`` resamples (``mode`` per key: ``"linear"`` for
    images, anti-aliased when downsampling if ``anti_aliasing``; ``"nearest-exact"`` for labels: the voxel whose
    centre is nearest, on the same centred grid as the linear resize - PyTorch's legacy ``"nearest"`` floors and
    shifts the labels by up to half a voxel against the image), ``grid="pad_or_crop"``
    pads or crops around the centre (BraTS: 240 -> 256 without resampling). ``inverse`` takes per-class
    probabilities back to the square (:func:`jnet.processing.from_grid`: linear resize, or crop/pad).

    Args:
        keys: keys of the arrays.
        size: output in-plane size (256).
        grid: ``"resize"`` or ``"pad_or_crop"``.
        mode: ``"linear"``, ``"nearest-exact"`` or ``"nearest"``, one or one per key (``"resize"`` only).
        anti_aliasing: smooth before downsampling the ``"linear"`` keys (``"resize"`` only).
    """

    def __init__(
        self,
        keys: KeysCollection,
        size: int,
        grid: str = "resize",
        mode: str | Sequence[str] = "linear",
        anti_aliasing: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if grid not in GRID_TYPES:
            raise ValueError(f"grid must be one of {GRID_TYPES}, got {grid!r}.")
        self.size = size
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        if not set(self.mode) <= {"linear", "nearest", "nearest-exact"}:
            raise ValueError(f"mode must be 'linear', 'nearest-exact' or 'nearest' per key, got {mode!r}.")
        self.grid = {"type": "resize", "anti_aliasing": bool(anti_aliasing)} if grid == "resize" else {"type": grid}

    def _per_key(self) -> Sequence:
        return self.mode

    def _forward(self, array: np.ndarray, affine: torch.Tensor, option) -> tuple[np.ndarray, torch.Tensor, dict]:
        side = int(array.shape[1])
        if array.shape[2] != side:
            raise ValueError(f"OutputGridd needs square slices (SquarePadd first), got {tuple(array.shape[1:3])}.")
        if self.grid["type"] == "resize":
            new_affine = _resized_affine(affine, (side, side), (self.size, self.size))
        else:
            start = steps.grid_start(side, self.size)  # the crop's first voxel, or minus the padding
            new_affine = _in_plane_step(affine, (1, 1), (start, start))
        return steps.to_grid(array, self.size, self.grid, option), new_affine, {"side": side, "mode": option}

    def _backward(self, array: np.ndarray, info: dict, orig_size: Sequence[int]) -> np.ndarray:
        return steps.from_grid(array, int(np.asarray(info["side"])), self.grid, _inverse_mode(info))


class LowResInputd(_InvertibleStep):
    """
    Downsample the in-plane axes of ``(C, H, W[, D])`` images to ``size x size``, the network input
    (:func:`jnet.processing.resize_slices`); any slice axis stays as it is.

    ``mode="area"`` averages the covered pixels (an anti-aliased box filter, the default); ``"nearest"`` picks
    one pixel per output pixel, as the J-Net paper's code does.

    Inverting it (``Invertd`` on a prediction) does NOT resize: the J-Net output is already on the full
    resolution grid the image had before this transform, so the inverse only restores that grid's affine. A
    plain ``Resized`` here would make ``Invertd`` keep the low-resolution affine (voxel spacing times
    ``H / size``) on the 256x256 prediction, and every later inverse step would start from the wrong grid.

    Args:
        keys: image keys.
        size: output in-plane size ``r``.
        mode: ``"area"``, ``"nearest"``, ``"nearest-exact"`` or ``"bilinear"``.
    """

    def __init__(self, keys: KeysCollection, size: int, mode: str = "area", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if mode not in LOWRES_MODES:
            raise ValueError(f"mode must be one of {LOWRES_MODES}, got {mode!r}.")
        self.size = size
        self.mode = mode

    def _forward(self, array: np.ndarray, affine: torch.Tensor, option) -> tuple[np.ndarray, torch.Tensor, dict]:
        new_affine = _resized_affine(affine, array.shape[1:3], (self.size, self.size))
        return steps.resize_slices(array, self.size, self.mode), new_affine, {"mode": "linear"}  # the inverse's

    def _backward(self, array: np.ndarray, info: dict, orig_size: Sequence[int]) -> np.ndarray:
        if tuple(array.shape[1:3]) != tuple(orig_size[:2]):  # not on the (square) full-resolution grid: bring it there
            return steps.resize_slices(array, orig_size[0], _inverse_mode(info))
        return array


class Activationd(MapTransform):
    """
    ``(K, ...)`` logits -> per-class probabilities (:func:`jnet.processing.activate`): ``"softmax"`` over
    the classes, or ``"sigmoid"`` per (overlapping) region. Computed on the CPU; the result goes back to the
    input's device (validation on a GPU).

    Args:
        keys: prediction keys.
        activation: ``"softmax"`` or ``"sigmoid"``.
    """

    def __init__(self, keys: KeysCollection, activation: str = "softmax", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if activation not in steps.ACTIVATIONS:
            raise ValueError(f"activation must be one of {steps.ACTIVATIONS}, got {activation!r}.")
        self.activation = activation

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = like_source(steps.activate(_numpy(d[key]), self.activation), d[key])
        return d


class AsLabelsd(MapTransform):
    """
    ``(K, ...)`` probabilities -> ``(1, ...)`` uint8 label codes (:func:`jnet.processing.to_labels`): the
    argmax class, or for BraTS (``layout`` set) the TC / WT / ET regions thresholded and written as that
    layout's codes, ET over TC over WT (:data:`jnet.data.layouts.brats.LAYOUTS`).

    Args:
        keys: prediction keys.
        layout: ``None`` for argmax classes, else a BraTS layout name (``"decathlon"``, ``"brats2021"``).
        threshold: region probability threshold (``layout`` only).
    """

    def __init__(
        self, keys: KeysCollection, layout: str | None = None, threshold: float = 0.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout must be None or one of {sorted(LAYOUTS)}, got {layout!r}.")
        self.layout = layout
        self.threshold = float(threshold)

    @property
    def labels(self) -> dict:
        """The runner's ``labels`` parameters for this step."""
        if self.layout is None:
            return {"type": "argmax"}
        codes = LAYOUTS[self.layout]
        return {
            "type": "regions",
            "threshold": self.threshold,
            "codes": {"edema": codes.edema, "core": codes.core, "enhancing": codes.enhancing},
            "layout": self.layout,
        }

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = like_source(steps.to_labels(_numpy(d[key]), self.labels)[None], d[key])
        return d


class InvertToLabelsd(MapTransform):
    """
    ``Activationd`` -> ``Invertd`` -> ``AsLabelsd`` of a prediction, one slab of slices at a time: the network's
    ``(K, out, out, D)`` logits become ``(1, H, W, D)`` uint8 labels on the input's grid and affine, without the
    ``K``-channel probabilities of the whole volume at the input's in-plane size (for a 512x512 prostate volume,
    1.5x the input) or the copies of their inverse steps. Each slab of :data:`jnet.processing.SLAB_SLICES` slices
    is activated, taken back through the in-plane steps of the pre-processing (``LowResInputd``, ``OutputGridd``,
    ``SquarePadd``: each step's own inverse, as ``Invertd`` calls it) and turned into labels; the labels are then
    reoriented (``Reorientd``'s inverse) - the same masks as the three transforms in a row (tests/test_slabs.py).

    Args:
        keys: prediction keys.
        transform: the pre-processing ``Compose`` whose steps are inverted (as ``Invertd``'s ``transform``).
        orig_keys: the key whose applied operations name the steps (``"image"``), one or one per key.
        activation: the :class:`Activationd` of the bundle (its ``activation`` is used).
        labels: the :class:`AsLabelsd` of the bundle (its ``labels`` are used).
    """

    SLICE_WISE = ("LowResInputd", "OutputGridd", "SquarePadd")

    def __init__(
        self,
        keys: KeysCollection,
        transform,
        orig_keys: KeysCollection,
        activation: Activationd,
        labels: AsLabelsd,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform
        self.orig_keys = ensure_tuple_rep(orig_keys, len(self.keys))
        self.activation = activation
        self.labels = labels

    def _steps(self) -> dict[int, InvertibleTransform]:
        found = self.transform.flatten().transforms if hasattr(self.transform, "flatten") else [self.transform]
        return {id(t): t for t in found}

    def _inverse_steps(self, source: MetaTensor) -> tuple[list, tuple]:
        """The in-plane steps to undo slab-wise, last first, as ``(transform, extra info, orig size)``, and the
        reorientation's ``(transform, extra info, orig size)``."""
        steps_by_id = self._steps()
        slice_wise, reorient = [], None
        for op in reversed(list(source.applied_operations)):
            name, step = op[TraceKeys.CLASS_NAME], steps_by_id.get(op[TraceKeys.ID])
            orig_size = [int(n) for n in np.asarray(op[TraceKeys.ORIG_SIZE]).ravel()]
            if step is None or (name not in self.SLICE_WISE and name != "Reorientd") or (name != "Reorientd" and reorient):
                raise ValueError(f"InvertToLabelsd inverts Reorientd then {', '.join(self.SLICE_WISE)}; the pre-processing applied {name}.")
            if name == "Reorientd":
                reorient = (step, op[TraceKeys.EXTRA_INFO], orig_size)
            else:
                slice_wise.append((step, op[TraceKeys.EXTRA_INFO], orig_size))
        if reorient is None:
            raise ValueError("InvertToLabelsd needs the pre-processing to start with Reorientd (it sets the grid the mask is written on).")
        return slice_wise, reorient

    def _labels_of_slab(self, logits: np.ndarray, slice_wise: list) -> np.ndarray:
        probabilities = steps.activate(logits, self.activation.activation)
        for step, info, orig_size in slice_wise:
            probabilities = step._backward(probabilities, info, orig_size)
        return steps.to_labels(probabilities, self.labels.labels)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key, orig_key in self.key_iterator(d, self.orig_keys):
            source = d[orig_key]
            slice_wise, (reorient, info, _) = self._inverse_steps(source)
            logits = _numpy(d[key])
            labels = None
            for start in range(0, logits.shape[-1], steps.SLAB_SLICES):
                part = self._labels_of_slab(logits[..., start : start + steps.SLAB_SLICES], slice_wise)
                if labels is None:
                    labels = np.empty(part.shape[:2] + logits.shape[-1:], dtype=np.uint8)
                labels[..., start : start + steps.SLAB_SLICES] = part
            labels = reorient._backward(labels[None], info, [])
            out = like_source(labels, source, torch.as_tensor(np.asarray(info["affine"], dtype=np.float64)))
            out.applied_operations = []
            d[key] = out.to(d[key].device) if isinstance(d[key], torch.Tensor) else out
        return d
