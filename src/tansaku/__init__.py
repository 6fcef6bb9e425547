"""tansaku: find materials with wanted properties by joining DFT, a database, ML and active learning."""

__version__ = "0.1.0"


class TansakuError(Exception):
    """An error whose message is meant for the user: it names the input and the problem."""
