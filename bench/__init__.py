"""Side-by-side benchmark of modelserve against a raw ASGI ceiling and peer servers.

Run `python -m bench.run` (or `make bench`); `--smoke` checks the harness end to end in seconds.
Nothing in this package is imported by modelserve itself, and its top level imports nothing
heavy: peer servers import `bench.models` from their own virtualenvs.
"""
