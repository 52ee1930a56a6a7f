"""Implementations of the ``refseg`` sub-commands (see ``refseg.cli``)."""
