"""The real-model suite of issue #12: library models on both sides, correct ports and planted bugs."""
