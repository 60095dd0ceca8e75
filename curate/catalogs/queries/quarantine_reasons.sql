-- Why samples and shards were quarantined, most common first.
SELECT reason, count(*) AS n, count(key) AS samples, count(*) - count(key) AS shards
FROM quarantine
GROUP BY reason
ORDER BY n DESC, reason;
