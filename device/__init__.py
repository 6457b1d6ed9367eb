"""camtrap device agent: capture -> vision -> store -> uplink, with OTA model updates."""

import os

# Before numpy is first imported: the agent's matrix work is tiny (a 6x6 solve in motion, a
# 1280x64 projection in the site memory), and OpenBLAS's worker threads only fight the
# capture and vision threads for the Pi's cores. Measured on a busy 2-core machine: a float32
# 1x1280 @ 1280x64 product took 1.44 ms threaded and 0.02 ms on one thread. An operator's own
# setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from device.contracts.release import VERSION as __version__

__all__ = ["__version__"]
