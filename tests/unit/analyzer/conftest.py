"""Makes the flow builders (flows.py) importable for the analyzer unit tests."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
