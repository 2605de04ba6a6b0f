-- anomalies_per_pool_day: per pool and UTC day (of the window's end), how many anomalies
-- (chain windows and subgraph hours, deduplicated by window_id), in how many alert threads,
-- the worst score, the highest severity and the kinds seen.
SELECT
  chain_id,
  dex,
  pool,
  CAST(window_end AS DATE) AS day,
  COUNT(*) AS anomalies,
  COUNT(CASE WHEN source = 'chain' THEN 1 END) AS chain_windows,
  COUNT(CASE WHEN source = 'subgraph' THEN 1 END) AS subgraph_hours,
  COUNT(DISTINCT alert_id) AS alerts,
  MIN(score) AS worst_score,
  CASE MAX(CASE severity WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END)
    WHEN 2 THEN 'high' WHEN 1 THEN 'medium' ELSE 'low'
  END AS max_severity,
  STRING_AGG(DISTINCT kind, ', ' ORDER BY kind) AS kinds
FROM (
  SELECT
    a.*,
    ROW_NUMBER() OVER (
      PARTITION BY a.window_id, a.chain_id, a.pool, a.window_end
      ORDER BY a.scored_at DESC
    ) AS row_rank
  FROM `${project}.${dataset}.anomalies` AS a
) AS anomaly
WHERE row_rank = 1
GROUP BY chain_id, dex, pool, CAST(window_end AS DATE)
