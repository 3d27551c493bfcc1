"""The `beast` command line: one group per package, handlers import their stage lazily."""
