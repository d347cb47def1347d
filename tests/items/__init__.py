"""Tests of pastset.items (a package, so that its test_plan.py and tests/launch/test_plan.py can both exist)."""
