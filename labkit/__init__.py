"""labkit: hands-on cloud classes from a roster, from first machine to last teardown."""

__version__ = "0.1.0"
