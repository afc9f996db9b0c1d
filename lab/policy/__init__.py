"""NetworkPolicy: the Kubernetes semantics (model) and their enforcement as iptables rules (iptables)."""
