"""The review page: see what the traps saw, confirm or correct it (``camtrap-cloud serve``)."""
