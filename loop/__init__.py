"""The loop: experiment state machine, the tick, the daemon, the CLI."""
