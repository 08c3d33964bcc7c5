"""Configuration shipped with the service: the default authorities file of the four Nancy
establishments (``authorities.toml``), used when ``MPI_AUTHORITIES`` names no other."""
