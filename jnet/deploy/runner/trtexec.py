"""The ``trtexec`` command lines that build and measure a TensorRT engine on the device it will run on."""


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

