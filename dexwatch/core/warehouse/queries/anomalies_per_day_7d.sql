-- Anomalies per UTC day over the last 7 days (today included), across all pools.
SELECT
  day,
  SUM(anomalies) AS anomalies,
  COUNT(*) AS pools,
  SUM(CASE WHEN max_severity = 'high' THEN 1 ELSE 0 END) AS pools_with_high_severity
FROM anomalies_per_pool_day
WHERE day >= CAST(CURRENT_TIMESTAMP - INTERVAL 6 DAY AS DATE)
GROUP BY day
ORDER BY day
