"""The ``trtexec`` command lines that build and measure a TensorRT engine on the device it will run on, and what
its output says (throughput and latency)."""

import re

THROUGHPUT = re.compile(r"throughput:\s*([0-9.]+)\s*qps", re.IGNORECASE)  # 8.x "Throughput:", 7.x "throughput:"
# the call's own latency line ("[I] Latency: min = 0.61 ms, max = 0.9 ms, mean = 0.65 ms, ..."), not the "H2D Latency",
# "D2H Latency" or "End-to-End Host Latency" lines around it
LATENCY_MEAN = re.compile(r"^(?:\[[^\]]*\]\s*)*Latency:\s*min.*?mean\s*[=:]\s*([0-9.]+)\s*ms", re.MULTILINE)


WORKSPACE_MB = 1024  # the builder's scratch memory: enough for these networks' tactics, a quarter of a Nano's 4 GB


def workspace_flag(tensorrt="8.2", workspace_mb=WORKSPACE_MB):
    """trtexec's workspace option for TensorRT version ``tensorrt`` ("8.2", "10.3", ...): ``--workspace=N`` (MiB)
    before 8.4 - JetPack 4.6's 8.2 knows no other -, ``--memPoolSize=workspace:N`` (MiB) from 8.4 on (TensorRT 10
    removed ``--workspace``); None for no flag."""
    if tensorrt is None:
        return None
    major_minor = tuple(int(part) for part in str(tensorrt).split(".")[:2] if part.isdigit())
    if major_minor < (8, 4):
        return "--workspace={}".format(workspace_mb)
    return "--memPoolSize=workspace:{}".format(workspace_mb)


def trtexec_commands(onnx_file, params, engine_file="model.engine", max_batch=32, fp16=True, trtexec="trtexec", tensorrt="8.2"):
    """
    The ``trtexec`` command lines that build a TensorRT engine from the exported ONNX model on the device it will
    run on (batch 1 to ``max_batch``, fp16 by default, the workspace of :func:`workspace_flag` for TensorRT version
    ``tensorrt``; None: no workspace flag) and measure it at batch 1 and ``max_batch`` (trtexec reports
    ``Throughput: X qps``; images/s = X x batch).
    """
    shape = "x{}x{}x{}".format(params["in_channels"], params["input_size"], params["input_size"])
    name = params["input_name"]
    build = [
        trtexec, "--onnx=" + onnx_file, "--saveEngine=" + engine_file, "--minShapes={}:1{}".format(name, shape),
        "--optShapes={}:{}{}".format(name, max_batch, shape), "--maxShapes={}:{}{}".format(name, max_batch, shape),
    ] + (["--fp16"] if fp16 else []) + ([workspace_flag(tensorrt)] if tensorrt else [])  # fmt: skip
    measure = [[trtexec, "--loadEngine=" + engine_file, "--shapes={}:{}{}".format(name, b, shape)] for b in (1, max_batch)]
    return [build] + measure



def parse_trtexec_output(text, batch):
    """``{"images_per_s": qps x batch, "latency_ms": mean latency of one call}`` from the output of a ``trtexec
    --loadEngine ... --shapes=...:<batch>x...`` run (its last ``Throughput`` and ``Latency`` lines); ``ValueError``
    when it holds no throughput line."""
    throughput = THROUGHPUT.findall(text)
    if not throughput:
        raise ValueError("no 'Throughput: X qps' line in the trtexec output")
    latency = LATENCY_MEAN.findall(text)
    return {"images_per_s": float(throughput[-1]) * batch, "latency_ms": float(latency[-1]) if latency else None}
