"""memoryd side by side with the systems users compare it with.

    make bench-peers                 # or: python -m bench.peers.runner [--quick]

One workload (bench/peers/workload.py) runs against each system through one
interface (adapter.PeerAdapter): memoryd, mem0 (local mode), Redis
agent-memory-server and a direct-SQL baseline on Postgres+pgvector. Each peer
lives in its own virtualenv under .peers/ (venvs.py) and is driven from there,
so its dependencies never enter memoryd's. The report (report.py) writes
bench/results/peers.{json,md,png}.
"""
