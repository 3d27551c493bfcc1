"""One project exception type, so the CLI can turn any expected failure into one clear line."""


class BeastError(Exception):
    """An expected failure a person can act on: the message names the file / field and the reason."""
