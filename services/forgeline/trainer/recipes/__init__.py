"""Training recipes: one class per task family, each with one visible training loop."""
