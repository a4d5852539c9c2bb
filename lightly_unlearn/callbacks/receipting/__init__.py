"""The parts of ``ReceiptCallback``, one job each (no Lightning base classes here)."""
