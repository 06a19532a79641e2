"""kalloc_compat: API shims so driver models can be written as Linux or FreeBSD 4 code."""
