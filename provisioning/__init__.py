"""camtrap-provision: the field technician's script, from a blank Pi to a deployed trap."""
