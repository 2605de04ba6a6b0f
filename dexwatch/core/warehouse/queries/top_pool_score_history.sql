-- The score history of this week's most anomalous pool over the last 7 days; for another
-- pool, filter on its chain and address (WHERE h.chain_id = 137 AND h.pool = '0x...') in
-- place of the join (one address can be a pool on two chains).
SELECT h.window_end, h.source, h.score, h.is_anomaly, h.model_version
FROM pool_score_history AS h
JOIN top_pools_7d AS top ON top.chain_id = h.chain_id AND top.pool = h.pool
WHERE top.pool_rank = 1
  AND h.window_end >= CURRENT_TIMESTAMP - INTERVAL 7 DAY
ORDER BY h.window_end, h.source
