-- Anomalies per chain and UTC day over the last 7 days (today included): each chain's
-- anomalous chain windows and subgraph hours, its pools with any, and its worst score.
SELECT
  chain_id,
  day,
  SUM(anomalies) AS anomalies,
  SUM(chain_windows) AS chain_windows,
  SUM(subgraph_hours) AS subgraph_hours,
  COUNT(*) AS pools,
  MIN(worst_score) AS worst_score
FROM anomalies_per_pool_day
WHERE day >= CAST(CURRENT_TIMESTAMP - INTERVAL 6 DAY AS DATE)
GROUP BY chain_id, day
ORDER BY chain_id, day
