"""`hookstream dev`: run the whole stack locally, play a scenario, show a live summary."""

from hookstream.dev.cli import dev

__all__ = ["dev"]
