"""Test utilities: the layer and application contracts, NumPy references,
and the cross-backend worker script."""
