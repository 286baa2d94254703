"""maskreid: person re-identification with generated attention masks (Capozzi et al.). Nothing is imported
or set here: every DVC stage loads this file, so it stays code-free (the version is in pyproject.toml)."""
