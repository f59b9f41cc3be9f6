"""Placeholder: this family is being built (see the open issues)."""

__all__: list[str] = []
