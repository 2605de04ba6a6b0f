"""Feature definitions shared by training and serving: ``chain`` (per pool and window of
events) and ``hourly`` (per pool and hour)."""
