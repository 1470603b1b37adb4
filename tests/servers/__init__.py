"""Loopback fake servers for tests and benchmarks (no network beyond 127.0.0.1).

:mod:`tests.servers.fault_server` is an OpenAI-compatible Chat Completions server that injects
faults (latency, server-side rate limits, 5xx, malformed bodies, truncation, ...) and counts what it
received. Other APIs plug into it through its route table.
"""
