"""Tests of pastset.launch (a package, so that its test_plan.py and tests/items/test_plan.py can both exist)."""
