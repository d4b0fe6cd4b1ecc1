"""Reports: turning stored measurements into decisions.

`tradeoff` (pure: Pareto frontier, recommendation, savings), `figures` (pure: results in,
plotly figure dict out), `ratings` (energy rating quintiles, computed in SQL at read time),
the reads that feed the pages: `report_page`, `compare_page`, `history_page` and `overview`, over the
variant rows they share in `rows` (with the summary cards in `kpis`)."""
