"""The parts of ``UnlearnCallback``, one job each (no Lightning base classes here)."""
