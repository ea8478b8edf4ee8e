"""epm: Execution & Position Management between signal models and Interactive Brokers."""

__version__ = "0.1.0"
