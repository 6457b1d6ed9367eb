"""On-device vision: model packs, the TFLite runtime, the blank filter and species rollup.

Entry point for the agent: ``device.vision.engine.VisionEngine``.
"""
