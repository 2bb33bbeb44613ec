"""What a person reads: the log table, the files, report.html, plots, the sentences."""
