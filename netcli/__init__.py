"""netcli: declarative neural-network training on a numpy engine."""
__version__ = "0.1.0"
