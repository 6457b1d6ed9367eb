"""Capture room: PIR triggers and timelapse ticks become bursts of frames.

The loop runs on its own thread and only hands frames to the store's queue, so a trigger is
never delayed by storage, classification or upload.
"""
