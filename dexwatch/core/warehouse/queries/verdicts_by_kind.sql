-- How operators judged the alerts of each kind: the share of false alarms per kind.
SELECT
  kind,
  COUNT(*) AS alerts,
  COUNT(CASE WHEN verdict = 'confirmed' THEN 1 END) AS confirmed,
  COUNT(CASE WHEN verdict = 'not-incident' THEN 1 END) AS false_alarms,
  COUNT(CASE WHEN verdict = 'acknowledged' THEN 1 END) AS acknowledged,
  ROUND(COUNT(CASE WHEN verdict = 'not-incident' THEN 1 END) / COUNT(*), 3) AS false_alarm_share
FROM alert_verdicts
GROUP BY kind
ORDER BY kind
