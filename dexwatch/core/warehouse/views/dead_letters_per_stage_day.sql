-- dead_letters_per_stage_day: per pipeline stage, chain and UTC day, how many messages it could
-- not read (one per letter_id: its latest delivery, by received_at) and how many distinct
-- reasons. The chain is the chain_id attribute of the message, NULL where it carried none.
SELECT
  stage,
  chain_id,
  CAST(received_at AS DATE) AS day,
  COUNT(*) AS letters,
  COUNT(DISTINCT reason) AS reasons,
  MIN(received_at) AS first_received_at,
  MAX(received_at) AS last_received_at
FROM (
  SELECT
    d.*,
    SAFE_CAST(JSON_VALUE(d.attributes, '$.chain_id') AS INT64) AS chain_id,
    ROW_NUMBER() OVER (PARTITION BY d.letter_id ORDER BY d.received_at DESC) AS row_rank
  FROM `${project}.${dataset}.dead_letters` AS d
) AS letter
WHERE row_rank = 1
GROUP BY stage, chain_id, CAST(received_at AS DATE)
