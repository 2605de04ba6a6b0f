-- Alert threads with an anomaly in the last 24 hours that nobody has judged yet, worst first.
SELECT DISTINCT
  alert_id,
  chain_id,
  dex,
  pool,
  thread_severity,
  thread_worst_score,
  thread_windows,
  thread_first_window_start,
  thread_last_window_end
FROM latest_anomalies
WHERE verdict IS NULL
  AND window_end >= CURRENT_TIMESTAMP - INTERVAL 24 HOUR
ORDER BY thread_worst_score, alert_id
