-- top_pools_7d: the pools with the most anomalies whose window ended in the last 7 days
-- (168 hours before now), ranked: pool_rank 1 has the most of all chains' pools,
-- chain_pool_rank 1 the most of its chain's (ties: the worse score first).
WITH anomaly AS (
  SELECT *
  FROM (
    SELECT
      a.*,
      ROW_NUMBER() OVER (
        PARTITION BY a.window_id, a.chain_id, a.pool, a.window_end
        ORDER BY a.scored_at DESC
      ) AS row_rank
    FROM `${project}.${dataset}.anomalies` AS a
    WHERE a.window_end >= CURRENT_TIMESTAMP - INTERVAL 7 DAY
  ) AS ranked
  WHERE row_rank = 1
),
per_pool AS (
  SELECT
    chain_id,
    dex,
    pool,
    COUNT(*) AS anomalies,
    COUNT(DISTINCT alert_id) AS alerts,
    MIN(score) AS worst_score,
    CASE MAX(CASE severity WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END)
      WHEN 2 THEN 'high' WHEN 1 THEN 'medium' ELSE 'low'
    END AS max_severity,
    STRING_AGG(DISTINCT kind, ', ' ORDER BY kind) AS kinds,
    MAX(window_end) AS last_window_end
  FROM anomaly
  GROUP BY chain_id, dex, pool
)
SELECT
  ROW_NUMBER() OVER (ORDER BY anomalies DESC, worst_score, chain_id, pool) AS pool_rank,
  ROW_NUMBER() OVER (
    PARTITION BY chain_id ORDER BY anomalies DESC, worst_score, pool
  ) AS chain_pool_rank,
  chain_id,
  dex,
  pool,
  anomalies,
  alerts,
  worst_score,
  max_severity,
  kinds,
  last_window_end
FROM per_pool
