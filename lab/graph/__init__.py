"""`lab graph`: the lab drawn as teaching material draws a cluster (the underlay, nodes with their
podCIDRs, pods with their IPs, the pod network's links, Services and their endpoints).

Pure, like the renderers: `build` turns a ClusterState into a neutral Graph, `mermaid` and `dot`
write it as text; only `image` runs a program (graphviz's dot, through lab.host) for SVG and PNG.
"""
