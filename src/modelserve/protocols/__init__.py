"""Other protocols' views of a Service, with no web framework: how their tensors or messages map
onto a Service's pydantic Input and Output. The HTTP adapters that serve them live in `http/`.
"""
