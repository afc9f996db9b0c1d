"""Ingress: the ingress-nginx add-on's nginx.conf (nginx, pure), its certificates (tls) and the
running nginx (runtime)."""
