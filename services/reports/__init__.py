"""The 17:00 ET report (blueprint §12): one trading day from the ledger as a self-contained HTML
page with inline SVG charts, beside CSV/Parquet of its tables (`daily.py` loads and shapes,
`html.py` renders, `models.report` holds the due rule and the chart geometry)."""
