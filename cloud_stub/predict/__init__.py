"""``camtrap-cloud predict``: the trap's own classifier behind a Vertex AI-format online
prediction endpoint (docs/scale.md, "Prediction endpoint")."""
