"""Store unit tests: helpers live in store_testdata.py."""
