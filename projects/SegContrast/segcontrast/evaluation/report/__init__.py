"""What a person reads: the log table, the files, report.html, the plots and the sentences."""
