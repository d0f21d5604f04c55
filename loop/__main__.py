from loop.cli import entry

entry()
