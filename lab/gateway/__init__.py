"""Gateway API on Envoy: the configuration renderer (pure) and the dataplane runtime."""
