"""beast-mode: the learning side of an LLM model router (shared config, errors and the CLI)."""
