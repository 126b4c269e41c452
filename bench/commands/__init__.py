"""The command line (``python -m bench ...``): each subcommand's arguments and the library calls
they make. Nothing below imports from here."""
