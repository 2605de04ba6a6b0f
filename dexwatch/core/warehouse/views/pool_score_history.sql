-- pool_score_history: every scored chain window and subgraph hour of every pool (one row per
-- window_id: the latest pane's, by scored_at). Filter it: WHERE pool = '0x...'.
-- The PARTITION BY lists columns the window_id determines, so that filter (and one on
-- window_end) reaches the table's clustering and partitions through the dedupe.
SELECT
  window_id,
  chain_id,
  dex,
  pool,
  source,
  window_start,
  window_end,
  events,
  score,
  is_anomaly,
  model_version,
  scored_at
FROM (
  SELECT
    s.*,
    ROW_NUMBER() OVER (
      PARTITION BY s.window_id, s.chain_id, s.pool, s.window_end
      ORDER BY s.scored_at DESC
    ) AS row_rank
  FROM `${project}.${dataset}.pool_scores` AS s
) AS scored
WHERE row_rank = 1
