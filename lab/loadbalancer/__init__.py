"""The LoadBalancer controller's runtime: MetalLB's L2 speaker (speaker.py)."""
