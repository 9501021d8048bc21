"""The ``cytolens`` command line: one thin module per verb, assembled in :mod:`cytolens.cli.main`."""
