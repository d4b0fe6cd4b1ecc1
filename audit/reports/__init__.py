"""Reports: turning stored measurements into decisions.

`tradeoff` (pure: Pareto frontier, recommendation, savings), `figures` (pure: results in,
plotly figure dict out), `ratings` (energy rating quintiles, computed in SQL at read time),
`selectors` (the reads that feed the report, compare, history and overview pages)."""
