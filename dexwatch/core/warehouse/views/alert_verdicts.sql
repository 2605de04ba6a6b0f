-- alert_verdicts: the operators' verdict on each alert thread they clicked (its latest click
-- in alert_feedback), with the thread as the anomalies table has it. A thread with no pool
-- anomaly (a market event's alone) keeps the span and kind its Slack message carried.
WITH click AS (
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
),
clicks AS (
  SELECT
    alert_id,
    COUNT(DISTINCT feedback_id) AS clicks,
    MIN(clicked_at) AS first_clicked_at
  FROM `${project}.${dataset}.alert_feedback`
  GROUP BY alert_id
),
thread AS (
  SELECT
    alert_id,
    MIN(chain_id) AS chain_id,
    STRING_AGG(DISTINCT pool, ', ' ORDER BY pool) AS pools,
    MIN(window_start) AS first_window_start,
    MAX(window_end) AS last_window_end,
    COUNT(*) AS windows,
    MIN(score) AS worst_score,
    MAX(CASE severity WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END) AS severity_rank,
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
  GROUP BY alert_id
)
SELECT
  click.alert_id,
  click.verdict,
  COALESCE(click.user_name, click.user_id) AS verdict_by,
  click.clicked_at AS verdict_at,
  clicks.clicks,
  clicks.first_clicked_at,
  click.revision,
  COALESCE(thread.chain_id, click.chain_id) AS chain_id,
  click.scope,
  COALESCE(click.kind, thread.kinds) AS kind,
  thread.kinds AS thread_kinds,
  thread.pools,
  COALESCE(thread.first_window_start, click.window_start) AS first_window_start,
  COALESCE(thread.last_window_end, click.window_end) AS last_window_end,
  COALESCE(thread.windows, 0) AS windows,
  thread.worst_score,
  CASE thread.severity_rank WHEN 2 THEN 'high' WHEN 1 THEN 'medium' WHEN 0 THEN 'low' END
    AS severity
FROM click
JOIN clicks ON clicks.alert_id = click.alert_id
LEFT JOIN thread ON thread.alert_id = click.alert_id
