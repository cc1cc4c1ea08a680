"""The ``anomaly-synth-aug`` command line (one module per subcommand, assembled in ``main``)."""
