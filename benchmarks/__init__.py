"""Benchmarks: dualjac against its dense-lane limit, torch.func, torch.autograd.functional and JAX.

Run ``python -m benchmarks.run`` (see ``benchmarks/README.md``). ``workloads`` defines W1–W5: each
builds, from one set of weights and inputs, a zero-argument callable per tool; ``run`` checks that
every tool's Jacobian agrees with dualjac's, times them and prints the table.
"""
