"""Talking to target databases: connections, statistics, schema snapshots, lock rehearsal."""
