"""Privacy: pseudonymous keys, personal-data columns, erasure and the proof that no erased byte remains."""
