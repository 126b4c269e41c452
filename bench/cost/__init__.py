"""What training costs, measured and predicted: ``bench speed`` (throughput against the bare
backbone, paper-budget device-hours), the episode-solver benchmark, and ``bench plan``."""
