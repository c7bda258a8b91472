"""The web console: jobs, loss curves, lineage, evaluations, releases and a playground.

A FastAPI app of its own process (`forgeline serve console`), a client of the services
through the typed SDK like any other; the browser sees only what its API routes return.
"""
