"""One module per command (StGit's commands/): each has add_parser(sub),
its arguments and help, and run(args), the command itself, which imports
what it needs when it runs (`--help` stays quick).  cli.py's COMMANDS
lists them; common.py holds what they share."""
