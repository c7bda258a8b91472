"""The `forgeline` command line."""
