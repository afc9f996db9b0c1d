"""Numbers the topology's validation and the renderers must agree on, without pydantic: the
renderers run in commands (`lab check`, `lab down`) that never load the topology model."""

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 bytes
