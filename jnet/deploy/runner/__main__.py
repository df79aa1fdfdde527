"""``python3 jnet_runner ...`` in a kit (``python -m jnet.deploy.runner ...`` in the repository)."""

import os
import sys

_KIT = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(_KIT, "jnet")) and _KIT not in sys.path:
    sys.path.insert(0, _KIT)  # a kit's folder run as `python3 -m jnet_runner` from its parent: its own jnet/

from jnet.deploy.runner.cli import main  # noqa: E402

sys.exit(main())
