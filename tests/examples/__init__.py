"""Tests of the example models in examples/, through the HTTP API."""
