"""Terminal views of the topics: the live monitor and the alerts tail."""
