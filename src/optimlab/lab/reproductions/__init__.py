"""The experiments of `optimlab reproduce`, one module each; each defines `run(ctx) -> Outcome`
(see `optimlab.lab.reproduce`). The registry with sources and claims is
`optimlab.lab.reproduce.EXPERIMENTS`."""
