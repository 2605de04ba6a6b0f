-- latest_anomalies: every anomaly (one row per window_id: the latest pane's, by scored_at),
-- with its alert thread (all the thread's anomalies) and the thread's Slack verdict (its
-- latest click), if an operator gave one.
-- The PARTITION BY lists columns the window_id determines, so a filter on pool or
-- window_end can reach the table (clustering, partitions) through the dedupe.
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
  ) AS ranked
  WHERE row_rank = 1
),
thread AS (
  SELECT
    alert_id,
    MIN(window_start) AS thread_first_window_start,
    MAX(window_end) AS thread_last_window_end,
    COUNT(*) AS thread_windows,
    MIN(score) AS thread_worst_score,
    MAX(CASE severity WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END) AS severity_rank,
    STRING_AGG(DISTINCT kind, ', ' ORDER BY kind) AS thread_kinds
  FROM anomaly
  GROUP BY alert_id
),
click AS (
  SELECT *
  FROM (
    SELECT
      f.*,
      ROW_NUMBER() OVER (
        PARTITION BY f.alert_id ORDER BY f.clicked_at DESC, f.feedback_id DESC
      ) AS row_rank
    FROM `${project}.${dataset}.alert_feedback` AS f
  ) AS ranked
  WHERE row_rank = 1
)
SELECT
  anomaly.window_id,
  anomaly.chain_id,
  anomaly.dex,
  anomaly.pool,
  anomaly.source,
  anomaly.window_start,
  anomaly.window_end,
  anomaly.events,
  anomaly.score,
  anomaly.severity,
  anomaly.kind,
  anomaly.confidence,
  JSON_VALUE(anomaly.top_features, '$[0].name') AS top_feature,
  anomaly.top_features,
  anomaly.model_version,
  anomaly.scored_at,
  anomaly.alert_id,
  thread.thread_first_window_start,
  thread.thread_last_window_end,
  thread.thread_windows,
  thread.thread_worst_score,
  CASE thread.severity_rank WHEN 2 THEN 'high' WHEN 1 THEN 'medium' ELSE 'low' END
    AS thread_severity,
  thread.thread_kinds,
  click.verdict,
  COALESCE(click.user_name, click.user_id) AS verdict_by,
  click.clicked_at AS verdict_at
FROM anomaly
JOIN thread ON thread.alert_id = anomaly.alert_id
LEFT JOIN click ON click.alert_id = anomaly.alert_id
