"""maskreid: person re-identification with generated attention masks (Capozzi et al.)."""

__version__ = "0.1.0"
