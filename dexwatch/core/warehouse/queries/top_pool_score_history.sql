-- The score history of this week's most anomalous pool over the last 7 days; put a pool's
-- address ('0x...') in place of the subquery for any other pool.
SELECT window_end, source, score, is_anomaly, model_version
FROM pool_score_history
WHERE pool = (SELECT pool FROM top_pools_7d WHERE pool_rank = 1)
  AND window_end >= CURRENT_TIMESTAMP - INTERVAL 7 DAY
ORDER BY window_end, source
