"""Every bundle in MONAI Label: a real ``monailabel start_server`` with the stock ``monaibundle`` app, over HTTP.

The server runs in the MONAI Label environment (``make test-envs``, tests/envs.py: monailabel 0.8.5,
MONAI 1.5.1), bound to 127.0.0.1 on a free port, offline: every bundle (the per-size ones and the `_any` ones) is copied into the app's ``model/``
folder (nothing is downloaded) with seeded weights in ``models/model.pt``; the studies folder holds synthetic cases,
one 4D NIfTI per case, as MONAI Label sends one image per request. Through the HTTP API:

- ``GET /info/`` lists every bundle, with the labels MONAI Label reads from its metadata's first output;
- ``POST /infer/<bundle>?image=<id>`` returns, for every bundle, a label volume with the input's shape and affine;
  for one prostate and one BraTS bundle it is voxel for voxel what the bundle's own ``monai.bundle run`` of
  ``inference.json`` writes for the same file and weights;
- ``POST /train/<bundle>`` runs one epoch on the labelled studies (prostate labels on disk; BraTS labels submitted
  through ``PUT /datastore/label`` as 3D Slicer does, after the prostate ones are removed with
  ``DELETE /datastore/label``) and writes a new checkpoint.

Skips, with the reason, when the environment could not be installed here (no network). Each endpoint's time is
printed at the end (``pytest -s``) and written to ``monailabel_timings.json`` in the test's work folder; with
``JNET_PUBLISH_TIMINGS=1``, after a complete run without failures, also to ``docs/results/monailabel_timings.json``
with the table of ``docs/monailabel.md`` rendered from it (``jnet/tools/bench/monailabel.py``).
"""

from __future__ import annotations

import datetime
import glob
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from envs import ENVS
from conftest import BUNDLES, REPO
from jnet.bundles.parse import bundle_network
from jnet.bundles.matrix import bundle_specs
from jnet.data import LAYOUTS
from jnet.tools.bench.monailabel import PUBLISH_ENV, format_monailabel_table, publish_monailabel_timings
from jnet.tools.synthetic import write_brats_task, write_prostate_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SPECS = {spec.name: spec for spec in bundle_specs(os.path.join(REPO, "configs"))}
TRAINED = {"prostate": "prostate_mri_lowres_32", "brats": "brats_mri_lowres_16"}
# compared with monai.bundle run: the trained ones, and the one-network-for-every-size bundle at its default size
COMPARED = {**{name: dataset for dataset, name in TRAINED.items()}, "prostate_mri_lowres_any": "prostate"}
LABEL_VALUES = {"prostate": {0, 1, 2}, "brats": set(LAYOUTS["decathlon"].label_values)}
NUM_LABELLED = 4  # per dataset: 3 train + 1 validation with val_split 0.25
SEPARATE = "patient04"  # the prostate test study again, as two files: patient04_t2.nii.gz and patient04_adc.nii.gz
SERVER_START_S = 180
TRAIN_S = 240
TIMINGS: dict[str, list[float]] = {}  # row of docs/monailabel.md's table -> seconds of each such request
TIMED_ROWS = len(SPECS) + 6  # start, GET /info/, one inference per bundle, 2 trainings, DELETE and PUT of labels
MONAILABEL = ENVS["monailabel"]
PINNED_VERSION = MONAILABEL.pinned("monailabel")


def _timed(name: str, start: float) -> None:
    TIMINGS.setdefault(name, []).append(round(time.perf_counter() - start, 2))


def _save_timings(root, session: pytest.Session) -> None:
    """Write the timings report to ``root`` and print its table; with ``JNET_PUBLISH_TIMINGS`` set, publish it in
    docs/ too, but only from a complete run without failures."""
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} usable cores",
        "monailabel": PINNED_VERSION,
        "timings": TIMINGS,
    }
    (root / "monailabel_timings.json").write_text(json.dumps(report, indent=2))
    print("\nMONAI Label endpoint timings (s):\n" + format_monailabel_table(report))
    if not os.environ.get(PUBLISH_ENV):
        return
    if session.testsfailed or len(TIMINGS) != TIMED_ROWS:
        print(f"{PUBLISH_ENV}: not published ({session.testsfailed} failed, {len(TIMINGS)} of {TIMED_ROWS} rows timed)")
        return
    print(f"{PUBLISH_ENV}: published", publish_monailabel_timings(report, os.path.join(REPO, "docs")))


def _request(method: str, url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 120):
    """(status, body) of one HTTP request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _multipart(field: str, path: str) -> tuple[bytes, dict]:
    """A multipart/form-data body holding one file, as a browser or 3D Slicer uploads it."""
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        content = f.read()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{os.path.basename(path)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _seeded_state_dict(bundle_dir: str, seed: int = 0) -> dict:
    """The bundle's network with its convolutions drawn N(0, 1/fan_in) from ``seed``: unlike the default
    initialisation, which predicts one class everywhere on these volumes, every class appears in its predictions,
    so comparing label maps means something."""
    network = bundle_network(bundle_dir, base="configs/inference.json")
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape, generator=generator) / math.sqrt(fan_in)
    return network.state_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(venv: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = REPO  # the clone under test, whatever the environment's editable install points at
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def venv() -> str:
    reason = MONAILABEL.skip_reason()
    if reason:
        pytest.skip(reason)
    return str(MONAILABEL.path())


@pytest.fixture(scope="module")
def work(tmp_path_factory, venv) -> Iterator[dict]:
    """The app (stock monaibundle + every bundle with seeded weights), the studies, and two reference runs of the
    bundles' own ``inference.json`` started in the background (they overlap the server's start)."""
    root = tmp_path_factory.mktemp("monailabel")
    app = root / "app"
    stock_app = os.path.join(venv, "monailabel", "sample-apps", "monaibundle")  # `monailabel apps --download` copies it
    shutil.copytree(stock_app, app, ignore=shutil.ignore_patterns("__pycache__"))
    for name in SPECS:
        bundle = app / "model" / name
        shutil.copytree(os.path.join(BUNDLES, name), bundle, ignore=shutil.ignore_patterns("models", "eval"))
        os.makedirs(bundle / "models")
        torch.save(_seeded_state_dict(str(bundle)), bundle / "models" / "model.pt")

    studies, raw = root / "studies", root / "raw"
    os.makedirs(studies / "labels" / "final")
    small = {"slice_sizes": ((128, 128), (160, 128)), "num_slices": (6, 8)}
    write_prostate_task(str(raw / "prostate"), NUM_LABELLED, 1, seed=5, **small)
    write_brats_task(str(raw / "brats"), "decathlon", NUM_LABELLED, 1, seed=5, size=(96, 96), num_slices=(6, 8))
    for image in glob.glob(str(raw / "*" / "images*" / "*.nii.gz")):
        shutil.copy(image, studies)
    for label in glob.glob(str(raw / "prostate" / "labelsTr" / "*.nii.gz")):
        shutil.copy(label, studies / "labels" / "final")  # BraTS labels are submitted over HTTP later
    tests = {"prostate": "prostate_04", "brats": "BRATS_004"}
    separate = nib.load(str(studies / f"{tests['prostate']}.nii.gz"))  # the same case as a scanner exports it: T2, ADC
    for channel, suffix in enumerate(("t2", "adc")):
        voxels = np.asarray(separate.dataobj)[..., channel]
        nib.save(nib.Nifti1Image(voxels, separate.affine), str(studies / f"{SEPARATE}_{suffix}.nii.gz"))

    references = {}
    for name, dataset in COMPARED.items():
        bundle_root = root / "reference" / name
        os.makedirs(bundle_root / "models")
        shutil.copy(app / "model" / name / "models" / "model.pt", bundle_root / "models")
        command = [
            os.path.join(venv, "bin", "python"), "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
            "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
            "--bundle_root", str(bundle_root), "--output_dir", str(bundle_root / "out"), "--num_workers", "0",
            "--input_files", f"['{studies / tests[dataset]}.nii.gz']",
        ]
        with open(bundle_root / "run.log", "w") as log:  # the child keeps its own copy of the descriptor
            references[name] = subprocess.Popen(
                command, cwd=os.path.join(BUNDLES, name), env=_env(venv), stdout=log, stderr=subprocess.STDOUT
            )
    yield {"root": root, "app": app, "studies": studies, "raw": raw, "tests": tests, "references": references}
    for process in references.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(venv, work, request) -> Iterator[dict]:
    """``monailabel start_server`` on 127.0.0.1 (its own process group, stopped at the end); yields its URL."""
    port = _free_port()
    env = _env(venv)
    env["MONAI_LABEL_SESSION_PATH"] = str(work["root"] / "sessions")
    command = [
        os.path.join(venv, "bin", "python"), "-m", "monailabel.main", "start_server",
        "--app", str(work["app"]), "--studies", str(work["studies"]),
        "--conf", "models", ",".join(SPECS), "--conf", "zoo_source", "github", "--conf", "sam2", "false",
        "--host", "127.0.0.1", "--port", str(port),
    ]
    log_path = work["root"] / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < SERVER_START_S:
            assert process.poll() is None, "server exited:\n" + log_path.read_text()[-4000:]
            try:
                if _request("GET", url + "/info/", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"server not up after {SERVER_START_S} s:\n" + log_path.read_text()[-4000:])
        _timed("`monailabel start_server` until `GET /info/` answers", start)
        yield {"url": url, "log": log_path}
    finally:
        _stop_group(process)
        _save_timings(work["root"], request.session)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the server and any training it started), SIGKILL to what is left."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return  # the group is gone
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _first_output_labels(name: str) -> dict:
    """What MONAI Label's BundleInferTask reads as labels: the first output's channel_def, background left out."""
    with open(os.path.join(BUNDLES, name, "configs", "metadata.json")) as f:
        output = next(iter(json.load(f)["network_data_format"]["outputs"].values()))
    return {v.lower(): int(k) for k, v in output["channel_def"].items() if v.lower() != "background"}


def test_info_lists_every_bundle_with_its_labels(server):
    start = time.perf_counter()
    status, body = _request("GET", server["url"] + "/info/")
    _timed("`GET /info/`", start)
    assert status == 200, body[-2000:]
    info = json.loads(body)
    assert info["version"] == PINNED_VERSION
    assert set(info["models"]) == set(SPECS) and set(info["trainers"]) == set(SPECS)
    for name in SPECS:
        assert info["models"][name]["type"] == "segmentation"
        assert info["models"][name]["labels"] == _first_output_labels(name), name
    assert info["models"][TRAINED["prostate"]]["labels"] == {"peripheral zone": 1, "transition zone": 2}
    assert info["datastore"]["total"] == 2 * (NUM_LABELLED + 1) + 2 and info["datastore"]["completed"] == NUM_LABELLED


def _infer(server, name: str, image_id: str, out_path: str) -> None:
    start = time.perf_counter()
    status, body = _request("POST", f"{server['url']}/infer/{name}?image={image_id}&output=image", timeout=300)
    _timed(f"`POST /infer/{name}`", start)
    assert status == 200, body[-2000:].decode(errors="replace") + server["log"].read_text()[-3000:]
    with open(out_path, "wb") as f:
        f.write(body)


@pytest.mark.parametrize("name", list(SPECS))
def test_infer_returns_a_label_volume_with_the_input_geometry(server, work, name, tmp_path):
    dataset = SPECS[name].dataset
    image_id = work["tests"][dataset]
    out = str(tmp_path / f"{image_id}_{name}.nii.gz")
    _infer(server, name, image_id, out)
    image, mask = nib.load(str(work["studies"] / f"{image_id}.nii.gz")), nib.load(out)
    assert image.ndim == 4 and image.shape[3] == SPECS[name].profile["config"]["in_channels"]
    assert mask.shape == image.shape[:3]
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
    values = set(np.unique(np.asarray(mask.dataobj)).astype(int).tolist())
    assert values <= LABEL_VALUES[dataset], values
    if name not in COMPARED:
        return
    process = work["references"][name]
    assert process.wait(timeout=300) == 0, (work["root"] / "reference" / name / "run.log").read_text()[-3000:]
    reference = np.asarray(nib.load(str(work["root"] / "reference" / name / "out" / f"{image_id}_seg.nii.gz")).dataobj)
    assert len(np.unique(reference)) >= 3  # the seeded weights predict several classes: the comparison is not trivial
    np.testing.assert_array_equal(np.asarray(mask.dataobj).astype(np.uint8), reference)


def test_a_study_of_separate_sequence_files_is_segmented_from_its_t2(server, work, tmp_path):
    """MONAI Label sends one image; the T2 (``patient04_t2``) stands for its case, whose ADC lies beside it (the
    bundle's ``sequence_suffixes``): the mask is the one of the same case as one 4D file, on the T2's grid."""
    name = TRAINED["prostate"]
    out = str(tmp_path / "separate_seg.nii.gz")
    _infer(server, name, f"{SEPARATE}_t2", out)
    mask, t2 = nib.load(out), nib.load(str(work["studies"] / f"{SEPARATE}_t2.nii.gz"))
    assert mask.shape == t2.shape
    np.testing.assert_allclose(mask.affine, t2.affine, atol=1e-4)
    assert work["references"][name].wait(timeout=300) == 0
    reference = np.asarray(nib.load(str(work["root"] / "reference" / name / "out" / f"{work['tests']['prostate']}_seg.nii.gz")).dataobj)
    assert len(np.unique(reference)) >= 3
    np.testing.assert_array_equal(np.asarray(mask.dataobj).astype(np.uint8), reference)


def test_a_study_with_the_wrong_channels_is_refused_with_the_reason_in_the_server_log(server, work):
    image_id = work["tests"]["brats"]  # 4 channels, sent to a 2-channel prostate bundle
    status, _ = _request("POST", f"{server['url']}/infer/{TRAINED['prostate']}?image={image_id}&output=image")
    assert status == 500  # MONAI Label answers any failed inference so; the reason goes to the server's console
    reason = re.compile(rf"{image_id}\.nii\.gz: image has 4 channel.*expects 2")  # the file and both counts
    deadline = time.perf_counter() + 10  # the traceback is logged after the answer is sent
    while not reason.search(server["log"].read_text()) and time.perf_counter() < deadline:
        time.sleep(0.2)
    assert reason.search(server["log"].read_text()), server["log"].read_text()[-3000:]


def _train_one_epoch(server, work, name: str) -> None:
    model_file = work["app"] / "model" / name / "models" / "model.pt"
    before = torch.load(model_file, weights_only=True)
    start = time.perf_counter()
    params = {"max_epochs": 1, "val_split": 0.25, "device": "cpu"}  # what 3D Slicer's Train button sends, in short
    headers = {"Content-Type": "application/json"}
    status, body = _request("POST", f"{server['url']}/train/{name}", json.dumps(params).encode(), headers)
    assert status == 200, body
    task = {}
    while time.perf_counter() - start < TRAIN_S:
        task = json.loads(_request("GET", server["url"] + "/train/")[1])
        if task.get("status") in ("DONE", "ERROR", "STOPPED"):
            break
        time.sleep(1)
    _timed(f"`POST /train/{name}`, 1 epoch, until `GET /train/` says DONE", start)
    details = "\n".join(task.get("details", []))
    assert task.get("status") == "DONE", f"training not done after {TRAIN_S} s: {task.get('status')}\n{details[-4000:]}"
    assert "Training Finished" in details and "val_mean_dice" in details, details[-4000:]
    after = torch.load(model_file, weights_only=True)
    assert after.keys() == before.keys()
    assert any(not torch.equal(after[k], before[k]) for k in after), "the checkpoint was not rewritten"


def test_train_prostate_one_epoch_writes_a_checkpoint(server, work):
    _train_one_epoch(server, work, TRAINED["prostate"])


def _completed_once_settled(server, expected: int, timeout_s: float = 30) -> int:
    """The datastore's ``completed`` count from ``GET /info/``, polled until it equals ``expected`` or ``timeout_s``
    passes. With MONAI Label's default ``MONAI_LABEL_DATASTORE_AUTO_RELOAD=true`` a ``DELETE /datastore/label``
    only removes the file and answers 200; the datastore forgets the label when its file watcher (another thread)
    sees the deletion, which can be after the next request (seen in CI: 5 completed instead of 4 for ~0.1 s)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        completed = json.loads(_request("GET", server["url"] + "/info/")[1])["datastore"]["completed"]
        if completed == expected or time.perf_counter() > deadline:
            return completed
        time.sleep(0.2)


def test_train_brats_on_labels_submitted_over_http(server, work):
    for label in sorted(glob.glob(str(work["studies"] / "labels" / "final" / "*.nii.gz"))):
        image_id = os.path.basename(label)[: -len(".nii.gz")]
        start = time.perf_counter()
        status, body = _request("DELETE", f"{server['url']}/datastore/label?id={image_id}&tag=final")
        _timed("`DELETE /datastore/label`, each", start)
        assert status == 200, body
    assert _completed_once_settled(server, 0) == 0  # the watcher and the uploads below would edit it concurrently
    for label in sorted(glob.glob(str(work["raw"] / "brats" / "labelsTr" / "*.nii.gz"))):
        image_id = os.path.basename(label)[: -len(".nii.gz")]
        body, headers = _multipart("label", label)
        start = time.perf_counter()
        status, answer = _request("PUT", f"{server['url']}/datastore/label?image={image_id}&tag=final", body, headers)
        _timed("`PUT /datastore/label` (a BraTS label submitted), each", start)
        assert status == 200, answer
    assert _completed_once_settled(server, NUM_LABELLED) == NUM_LABELLED
    final = sorted(os.listdir(work["studies"] / "labels" / "final"))
    assert final == [f"BRATS_{i:03d}.nii.gz" for i in range(NUM_LABELLED)]
    _train_one_epoch(server, work, TRAINED["brats"])
