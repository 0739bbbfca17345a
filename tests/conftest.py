"""Shared pytest setup: makes tests/support importable. Area fixtures live in each area's conftest."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
