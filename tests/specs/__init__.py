"""Rule specs, one module per rules family (tests/specs/<family>.py, each defining SPECS)."""
