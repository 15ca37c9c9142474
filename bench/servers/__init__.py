"""One small app per server kind; each is started as its own process by `bench.launch`."""
