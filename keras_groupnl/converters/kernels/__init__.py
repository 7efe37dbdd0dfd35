"""C sources of the fused GroupNL kernel that the "mcu" target writes."""
