"""Hardware behind small interfaces with swappable backends (like gpiozero's pin factories).

- ``camera``: the Camera protocol and ``open_camera`` (picamera2 on a Pi, replay/synthetic here)
- ``pir``: the PIR motion sensor on gpiozero
- ``ir``: the IR illuminator on gpiozero
"""


class HardwareUnavailable(RuntimeError):
    """Hardware the config names is not there: no camera stack, no camera, no GPIO library.

    ``camtrap run`` logs it as one line and exits ``Exit.UNAVAILABLE`` (69); the message names
    the part (the camera backend, the GPIO pin) and says what to check.
    """
