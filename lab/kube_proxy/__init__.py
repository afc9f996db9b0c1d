"""kube-proxy (pure): Services turned into the rules kube-proxy would program on a node."""
