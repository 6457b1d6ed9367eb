"""Hardware behind small interfaces with swappable backends (like gpiozero's pin factories).

- ``camera``: the Camera protocol and ``open_camera`` (picamera2 on a Pi, replay/synthetic here)
- ``pir``: the PIR motion sensor on gpiozero
- ``ir``: the IR illuminator on gpiozero
"""
