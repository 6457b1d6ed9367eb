"""Training hand-off: clean, balance and copy labelled images for AutoML, on Apache Beam."""
