"""`lab trace SRC DST[:PORT]`: one connection's walk, predicted from the models and observed in the
kernel, side by side (docs/TRACE.md)."""
