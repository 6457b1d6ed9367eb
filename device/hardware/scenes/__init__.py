"""Image assets for the synthetic scenes (see README.md here; rebuilt by build_assets.py)."""
