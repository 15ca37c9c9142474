"""End-to-end tests: a real `modelserve serve` process, real sockets, real signals."""
