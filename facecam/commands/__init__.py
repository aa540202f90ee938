"""``nasfe-cam`` sub-commands: one module each (``NAME``, ``HELP``, ``add_arguments``, ``run``)."""
