-- dead_letters_per_stage_day: per pipeline stage and UTC day, how many messages it could not
-- read (one per letter_id: its latest delivery, by received_at) and how many distinct reasons.
SELECT
  stage,
  CAST(received_at AS DATE) AS day,
  COUNT(*) AS letters,
  COUNT(DISTINCT reason) AS reasons,
  MIN(received_at) AS first_received_at,
  MAX(received_at) AS last_received_at
FROM (
  SELECT
    d.*,
    ROW_NUMBER() OVER (PARTITION BY d.letter_id ORDER BY d.received_at DESC) AS row_rank
  FROM `${project}.${dataset}.dead_letters` AS d
) AS letter
WHERE row_rank = 1
GROUP BY stage, CAST(received_at AS DATE)
