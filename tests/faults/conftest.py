"""Fixtures of the fault suite (defined in fault_helpers, shared with its tests)."""

from fault_helpers import public_dirs

__all__ = ["public_dirs"]
