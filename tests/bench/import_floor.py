"""What the agent cannot run without: imported, nothing else (the RSS floor under the agent)."""

import gpiozero  # noqa: F401
import numpy  # noqa: F401
import PIL.Image  # noqa: F401
import pydantic_settings  # noqa: F401

import device.config  # noqa: F401
