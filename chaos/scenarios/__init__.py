"""One module per scenario (see ``chaos.__main__``)."""
