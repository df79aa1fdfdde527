"""``python3 jnet_runner ...`` in a kit (``python -m jnet.deploy.runner ...`` in the repository)."""

import os
import sys

_KIT = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(_KIT, "jnet")) and _KIT not in sys.path:
    sys.path.insert(0, _KIT)  # a kit's folder run as `python3 -m jnet_runner` from its parent: its own jnet/

try:
    from jnet.deploy.runner.cli import main
except ImportError as error:  # numpy or nibabel missing: one line, not a traceback
    sys.stderr.write("ERROR: the runner needs numpy and nibabel ({}); pip3 install numpy nibabel onnxruntime.\n".format(error))
    sys.exit(1)

sys.exit(main())
