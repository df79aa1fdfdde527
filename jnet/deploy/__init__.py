"""Deployment: ONNX/TorchScript export (:mod:`.export`), the runner's ``deploy.json`` (:mod:`.params`), the kit
(:mod:`.kit`), the standalone runner (:mod:`.runner`, its own small package in the kit), and bundle distribution
(:mod:`.pack`, :mod:`.integrity`)."""
