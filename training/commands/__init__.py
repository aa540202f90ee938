"""Sub-command modules of nasfe-train and nasfe-eval (see engine.cli.build_main)."""
