"""The ``trtexec`` command lines that build and measure a TensorRT engine on the device it will run on, and what
its output says (throughput and latency)."""

import re

THROUGHPUT = re.compile(r"throughput:\s*([0-9.]+)\s*qps", re.IGNORECASE)  # 8.x "Throughput:", 7.x "throughput:"
# the call's own latency line ("[I] Latency: min = 0.61 ms, max = 0.9 ms, mean = 0.65 ms, ..."), not the "H2D Latency",
# "D2H Latency" or "End-to-End Host Latency" lines around it
LATENCY_MEAN = re.compile(r"^(?:\[[^\]]*\]\s*)*Latency:\s*min.*?mean\s*[=:]\s*([0-9.]+)\s*ms", re.MULTILINE)


def trtexec_commands(onnx_file, params, engine_file="model.engine", max_batch=32, fp16=True, trtexec="trtexec"):
    """
    The ``trtexec`` command lines that build a TensorRT engine from the exported ONNX model on the device it will
    run on (batch 1 to ``max_batch``, fp16 by default) and measure it at batch 1 and ``max_batch`` (trtexec
    reports ``Throughput: X qps``; images/s = X x batch).
    """
    shape = "x{}x{}x{}".format(params["in_channels"], params["input_size"], params["input_size"])
    name = params["input_name"]
    build = [
        trtexec, "--onnx=" + onnx_file, "--saveEngine=" + engine_file, "--minShapes={}:1{}".format(name, shape),
        "--optShapes={}:{}{}".format(name, max_batch, shape), "--maxShapes={}:{}{}".format(name, max_batch, shape),
    ] + (["--fp16"] if fp16 else [])  # fmt: skip
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
