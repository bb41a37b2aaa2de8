"""One module per `optimlab` subcommand: argument parsing and printing only."""
