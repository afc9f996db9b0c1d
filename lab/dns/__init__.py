"""Cluster DNS: kube-dns's records served by dnsmasq, and the resolv.conf the kubelet writes."""
