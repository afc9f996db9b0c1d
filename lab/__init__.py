"""k8s-netlab: Kubernetes networking built for real on Mininet, and a harness that proves it."""
