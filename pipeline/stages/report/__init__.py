"""The report of a period: model, sql, rows, build, render (CSV, Parquet), focus (FOCUS), html,
restate, publish, views (the query views). Its modules import downwards only."""
