"""Forward numerics with no derivatives: the kernels the rules of ``dualjac/rules/`` are built from."""
